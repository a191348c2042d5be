"""What surrounds a command of the CLI (:mod:`sparsecheck.cli`): SIGINT and SIGTERM raise and print one
line on where the command stopped, an internal error's traceback goes to a file, and a command that
fails leaves no ``--out`` folder it created. Imports inside functions keep ``--help`` fast."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Iterator

from sparsecheck.errors import Interrupted


@contextlib.contextmanager
def _release_out_dir_on_failure(out: Path, outputs: tuple[str, ...] = (), done_file: str | None = None
                                ) -> Iterator[None]:
    """A run that stops before writing anything leaves no ``--out`` folder that it created behind.

    Only a folder that did not exist when the command started, and that holds nothing but
    sparsecheck's marker, is removed: never a user's folder or earlier results. An interrupted run
    (SIGINT, SIGTERM) that had not written ``done_file`` first removes the ``outputs`` it had begun
    to write (only those the folder's marker lists as sparsecheck's), so nothing half-written stays.
    """
    from sparsecheck._runtime import ACTIVITY

    created = [d for d in [out, *out.parents] if not os.path.lexists(d)]  # out and the parents it needs
    ACTIVITY.out_dir, ACTIVITY.outputs, ACTIVITY.done_file = out, outputs, done_file
    try:
        yield
    except BaseException as exc:
        from sparsecheck.outputs import release_out_dir, remove_outputs

        interrupted = isinstance(exc, (KeyboardInterrupt, Interrupted))
        with contextlib.suppress(OSError):
            if interrupted and out.is_dir() and not (done_file and (out / done_file).is_file()):
                remove_outputs(out, outputs)
            if created and release_out_dir(out):
                for parent in created[1:]:  # rmdir refuses a folder that something else wrote into
                    parent.rmdir()
        raise


#: exit code of a run that could not finish for a reason that is not the user's input
INTERNAL_ERROR = 3


def _write_traceback() -> str:
    """Save the current exception's traceback to a file in the temp directory; return its path."""
    import tempfile
    import traceback

    fd, path = tempfile.mkstemp(prefix="sparsecheck-traceback-", suffix=".txt")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(f"sparsecheck {sys.argv!r}\n")
        traceback.print_exc(file=fh)
    return path


def _reported_to_rank0(exc: BaseException) -> bool:
    """True on a rank other than 0 for an error rank 0 prints (:meth:`Ranks.together` reported it)."""
    from sparsecheck.features.distributed import REPORTED

    return bool(getattr(exc, REPORTED, False)) and os.environ.get("RANK", "0") != "0"


def _rank_prefix() -> str:
    from sparsecheck.features.distributed import rank_label

    rank = rank_label()
    return f"[{rank}] " if rank else ""


def _raise_interrupted(signum: int, _frame) -> None:
    """SIGINT/SIGTERM handler: a second signal stops the process at once; the first unwinds it."""
    import signal

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)
    raise Interrupted(signum)


@contextlib.contextmanager
def _interrupts_raise() -> Iterator[None]:
    """While the command runs, SIGINT and SIGTERM raise :class:`~sparsecheck.errors.Interrupted`
    (typer would turn a KeyboardInterrupt into a silent exit 130, and SIGTERM would skip every
    cleanup); the previous handlers come back afterwards. Only the main thread can set them."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, _raise_interrupted) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def interrupt_line() -> str:
    """The one line an interrupted command prints: where it was, what is in --out, what became of
    its MLflow run (see :class:`~sparsecheck._runtime.Activity`)."""
    from sparsecheck._runtime import ACTIVITY
    from sparsecheck.outputs import OUT_DIR_MARKER

    parts = [f"interrupted during {ACTIVITY.step}"]
    out = ACTIVITY.out_dir
    if out is not None:
        done = ACTIVITY.done_file
        if done and (out / done).is_file():
            parts.append(f"the outputs in {out} were complete ({done} is there)")
        elif not out.is_dir() or all(p.name == OUT_DIR_MARKER or p.name not in ACTIVITY.outputs
                                     for p in out.iterdir()):
            parts.append(f"nothing was written to {out}")
        else:
            parts.append(f"{out} holds no {done or 'finished outputs'}: what is there is incomplete")
    if ACTIVITY.mlflow_run:
        if ACTIVITY.mlflow_status:
            parts.append(f"the MLflow run {ACTIVITY.mlflow_run} is marked {ACTIVITY.mlflow_status}")
        else:
            parts.append(f"the MLflow run {ACTIVITY.mlflow_run} could not be closed: the next run in its "
                         "experiment marks it KILLED")
    return "; ".join(parts)
