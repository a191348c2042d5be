"""Runtime helpers shared by every stage: device choice, threads, progress bars, forward-pass counts,
what the process is doing (for the interrupt line), one-line reasons of exceptions.

Files written (atomically, into claimed output directories) are :mod:`sparsecheck.outputs`'."""

from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, TypeVar

import torch
from tqdm.auto import tqdm

from sparsecheck.errors import ParameterError

T = TypeVar("T")

__all__ = ["resolve_device", "progress", "torch_threads", "one_line", "exception_reason", "ACTIVITY", "Activity",
           "doing", "count_forward", "note_forward"]


@dataclass
class Activity:
    """What this process is doing, for the one line the command line prints when it is interrupted.

    The pipeline, monitor and MLflow run update it as they go (:func:`doing`); nothing reads it but
    the command line's interrupt handler. ``step`` reads after "interrupted during".
    """

    step: str = "start-up"
    #: the command's --out, the file there that marks finished outputs, and the outputs it writes
    out_dir: Path | None = None
    done_file: str | None = None
    outputs: tuple[str, ...] = ()
    #: the MLflow run this process created, and the status it was terminated with (None: not yet)
    mlflow_run: str | None = None
    mlflow_status: str | None = None

    def reset(self) -> None:
        self.__init__()  # type: ignore[misc]


#: the process's one :class:`Activity` (reset by each command line call)
ACTIVITY = Activity()


@contextlib.contextmanager
def doing(step: str) -> Iterator[None]:
    """Record ``step`` as what the process is doing for the duration of the block. When the block
    raises, the step stays recorded: it is where the process was stopped."""
    previous = ACTIVITY.step
    ACTIVITY.step = step
    yield
    ACTIVITY.step = previous


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"``/None → CUDA when available, else CPU; ``"cpu"``, ``"cuda"``, ``"cuda:1"`` as given.

    Raises ParameterError for unknown names or CUDA asked for where there is none.
    """
    if isinstance(device, torch.device):
        return device
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(device, str) or not (device == "cpu" or device.startswith("cuda")):
        raise ParameterError(f"The 'device' parameter must be 'auto', 'cpu' or 'cuda[:N]'. Got {device!r} instead.",
                             parameter="device")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ParameterError("The 'device' parameter asks for CUDA but no CUDA device is available.",
                             parameter="device")
    return torch.device(device)


_FORWARD: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar("sparsecheck_forward", default=None)


@contextlib.contextmanager
def count_forward() -> Iterator[list[int]]:
    """Count the images the model runs on inside the block: ``with count_forward() as n: ...; n[0]``.

    Every forward pass of sparsecheck's (:class:`~sparsecheck.features.taps.FeatureExtractor`,
    the invariance assertions) reports its batch size with :func:`note_forward`; the pipeline
    counts each stage so (``results["forward_passes"]``). An inner block counts on its own.

    Examples
    --------
    >>> with count_forward() as n:
    ...     note_forward(32); note_forward(8)
    >>> n[0]
    40
    """
    box = [0]
    token = _FORWARD.set(box)
    try:
        yield box
    finally:
        _FORWARD.reset(token)


def note_forward(images: int) -> None:
    """Add ``images`` to the innermost :func:`count_forward` block, if any."""
    box = _FORWARD.get()
    if box is not None:
        box[0] += int(images)


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` intra-op torch threads (None: unchanged), restoring the count after.

    Small CPU problems (a few thousand rows of a few hundred features) run several times faster on
    one thread than on two that wait on each other, and far faster when other processes share the
    cores.
    """
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, int(n)))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def progress(iterable: Iterable[T] | None = None, *, total: int | None = None, desc: str = "",
             unit: str = "it", show: bool = True) -> Iterator[T] | Any:
    """A tqdm progress bar on stderr, hidden when stderr is not a terminal (or ``show`` is False:
    the ranks of a distributed job other than 0)."""
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=None if show else True, leave=False,
                dynamic_ncols=True)


def one_line(exc: BaseException, limit: int = 300) -> str:
    """An exception's message on one line, at most ``limit`` characters (its type when it has none)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


def exception_reason(exc: BaseException) -> str:
    """``"TypeName: message"`` on one line: the reason recorded for a step that was skipped."""
    return f"{type(exc).__name__}: {one_line(exc)}"
