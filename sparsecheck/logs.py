"""How the command line shows log records: one handler on the ``sparsecheck`` logger, on stderr.

Library code only logs (``logging.getLogger(__name__)``); the command-line entry points
(:mod:`sparsecheck.cli`, ``python -m sparsecheck.results``) call :func:`setup_logging` once.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

from sparsecheck.features.distributed import rank_label

__all__ = ["setup_logging", "StderrHandler"]


class StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record is emitted (test runners swap it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self):  # noqa: D401
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def setup_logging(verbose: int, quiet: bool) -> None:
    """Log ``sparsecheck.*`` records to stderr: INFO and up, DEBUG with ``verbose``, WARNING and up
    when ``quiet``; each line stamped with the time (and the rank under torchrun)."""
    level = logging.WARNING if quiet else (logging.DEBUG if verbose else logging.INFO)
    root = logging.getLogger("sparsecheck")
    handler = next((h for h in root.handlers if isinstance(h, StderrHandler)), None)
    if handler is None:
        handler = StderrHandler()
        root.addHandler(handler)
    rank = rank_label()  # under torchrun every line says which rank wrote it
    handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)-7s {f'[{rank}] ' if rank else ''}%(message)s",
                                           "%H:%M:%S"))
    root.setLevel(level)
    # one line per record: MLflow (and anything else that configures the root logger) puts a
    # handler on the root logger, which would print every line again if ours propagated to it
    root.propagate = False
    if not verbose:
        # MLflow draws a progress bar for every artifact download; the CLI keeps stderr to our lines
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        warnings.filterwarnings("ignore", category=UserWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        for noisy in ("torch", "mlflow", "alembic", "urllib3"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
