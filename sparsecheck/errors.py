"""Every exception sparsecheck raises on purpose.

The tree (``exit_code`` is what the command line exits with)::

    SparsecheckError                 base class; exit 2: the user's input or usage is wrong
     ├── ConfigError                 a config key or value is wrong (carries `key`, `value`)
     │    └── AssertionSpecError     an assertion spec is malformed (carries `assertion`, `key`)
     ├── DataError                   a data file, array shape or metadata table is wrong (`path`)
     ├── ModelError                  a model cannot be loaded, run or hooked (`path`)
     ├── ParameterError              an estimator/function parameter is out of range (`parameter`);
     │                               also a ValueError, as scikit-learn users expect
     ├── SolverError                 exit 3: a path solver failed (diverged, non-finite values)
     ├── TrackingError               exit 3: MLflow could not be reached, refused, or its store is
     │                               broken; or a run was not found
     └── RankError                   another rank of a distributed (torchrun) job failed; exits
                                     with that rank's code and carries its one-line reason

    Interrupted                      a BaseException, like KeyboardInterrupt: SIGINT or SIGTERM
                                     reached the command line; exits 128 + the signal (130, 143)

Exit 3 means the run could not finish for a reason that is not the user's input; the command line
also exits 3 on any unexpected exception, after writing its traceback to a file it names.

Every error names what was wrong in its message, so the CLI prints ``str(error)`` as one line and
exits with ``exit_code``.  Library code raises them ``from`` the original exception to keep the cause.
"""

from __future__ import annotations

import reprlib
from pathlib import Path
from typing import Any

__all__ = [
    "SparsecheckError",
    "ConfigError",
    "AssertionSpecError",
    "DataError",
    "ModelError",
    "ParameterError",
    "SolverError",
    "TrackingError",
    "RankError",
    "Interrupted",
    "brief",
]


def brief(value: Any, limit: int = 80) -> str:
    """``repr(value)`` as an error message shows it: strings, containers and nesting cut short
    (:mod:`reprlib`), so a message never grows with what the user gave.

    >>> brief("x" * 500)[:12], len(brief("x" * 500)) <= 80
    ("'xxxxxxxxxxx", True)
    >>> brief([[1, 2, [3, [4]]]] * 1000)
    '[[1, 2, [3, [...]]], [1, 2, [3, [...]]], [1, 2, [3, [...]]], [1, 2, [3, [...]]], ...]'
    """
    shorten = reprlib.Repr()
    shorten.maxstring = shorten.maxother = max(12, limit - 8)
    shorten.maxlist = shorten.maxtuple = shorten.maxset = shorten.maxfrozenset = shorten.maxdict = 4
    shorten.maxlevel = 3
    text = shorten.repr(value)
    return text if len(text) <= 2 * limit else text[:2 * limit - 3] + "..."


class SparsecheckError(Exception):
    """Base class of every error sparsecheck raises on purpose."""

    exit_code: int = 2


class ConfigError(SparsecheckError):
    """A configuration key is unknown, missing, of the wrong type or out of range."""

    def __init__(self, message: str, *, key: str | None = None, value: Any = None) -> None:
        self.key = key
        self.value = value
        super().__init__(f"{key}: {message}" if key else message)


class AssertionSpecError(ConfigError):
    """An assertion declared in a config or in Python is malformed."""

    def __init__(self, message: str, *, assertion: str, key: str | None = None, value: Any = None) -> None:
        self.assertion = assertion
        where = f"assertion {brief(assertion)}" + (f", key {brief(key)}" if key else "")
        super().__init__(f"{where}: {message}", key=None, value=value)
        self.key = key


class DataError(SparsecheckError):
    """A data file is missing or unreadable, or its arrays or metadata do not fit together."""

    def __init__(self, message: str, *, path: str | Path | None = None) -> None:
        self.path = None if path is None else Path(path)
        super().__init__(f"{path}: {message}" if path is not None else message)


class ModelError(SparsecheckError):
    """A model cannot be loaded, has no such layer, or fails on the data."""

    def __init__(self, message: str, *, path: str | Path | None = None) -> None:
        self.path = path
        super().__init__(f"{path}: {message}" if path is not None else message)


class ParameterError(SparsecheckError, ValueError):
    """A parameter is of the wrong type or outside its allowed range.

    Messages follow scikit-learn: "The 'alpha' parameter of SparseDecisionLayer must be a float in
    [0, 1]. Got 1.5 instead."
    """

    def __init__(self, message: str, *, parameter: str | None = None) -> None:
        self.parameter = parameter
        super().__init__(message)


class SolverError(SparsecheckError):
    """A regularisation-path solver failed (non-finite values, divergence)."""

    exit_code = 3


class TrackingError(SparsecheckError):
    """MLflow could not be reached, refused, or its store is broken; or a run or artifact it should
    hold is missing.

    Exit 3 (the run could not finish), except with ``user_input=True`` — the user named a run,
    artifact or experiment that is not there — which exits 2.
    """

    exit_code = 3

    def __init__(self, message: str, *, user_input: bool = False) -> None:
        super().__init__(message)
        if user_input:
            self.exit_code = 2


class RankError(SparsecheckError):
    """Another rank of a distributed job (``torchrun ... sparsecheck extract``) failed.

    Every rank raises it (the failing one raises its own error), so all of them stop at the same
    step; it carries the failing rank, its exit code and its one-line reason.
    """

    def __init__(self, rank: int, reason: str, *, exit_code: int = 2, step: str = "") -> None:
        self.rank = rank
        self.reason = reason
        self.exit_code = exit_code
        super().__init__(f"rank {rank} failed{f' while {step}' if step else ''}: {reason}")


class Interrupted(BaseException):
    """SIGINT or SIGTERM reached the command line (which turns the signal into this exception).

    A ``BaseException``, as ``KeyboardInterrupt`` is, so that no ``except Exception`` takes it for
    an error to recover from; cleanup in ``finally`` blocks and context managers still runs. The
    command line exits with ``exit_code``: 128 + the signal number (130 for SIGINT, 143 for SIGTERM).
    """

    def __init__(self, signum: int) -> None:
        import signal

        self.signum = int(signum)
        self.exit_code = 128 + self.signum
        super().__init__(signal.Signals(self.signum).name)
