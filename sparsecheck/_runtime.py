"""Runtime helpers shared by every stage: device choice, progress bars, atomic file writes."""

from __future__ import annotations

import contextlib
import contextvars
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, TypeVar

import torch
from tqdm.auto import tqdm

from sparsecheck.errors import ParameterError

T = TypeVar("T")

__all__ = ["resolve_device", "progress", "atomic_write", "write_json_atomic", "torch_threads", "claim_out_dir",
           "release_out_dir", "remove_outputs", "out_dir_outputs", "OUT_DIR_MARKER", "jsonable", "one_line",
           "exception_reason", "ACTIVITY", "Activity", "doing", "count_forward", "note_forward"]


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

    Every forward pass of sparsecheck's (:class:`~sparsecheck.sparse.features.FeatureExtractor`,
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


def _umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux), else set and restored."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "w", **kwargs: Any) -> Iterator[Any]:
    """Write to a temporary file beside ``path`` and rename it into place only on success.

    The file gets the permissions an ordinary ``open`` would give it (``0o666`` less the umask),
    not mkstemp's private 0600: reports are read by CI artifact servers and teammates.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **kwargs) as fh:
            os.chmod(tmp, 0o666 & ~_umask())
            yield fh
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


#: a file sparsecheck leaves in every output directory it writes, so it can write there again; it lists
#: the files and folders sparsecheck claimed there (JSON: ``{"written_by": ..., "outputs": [...]}``)
OUT_DIR_MARKER = ".sparsecheck"


def _refused_out_dir(out: Path) -> str | None:
    """What ``out`` is when it must never be an output directory: the root, the home directory or a
    folder that holds the working directory."""
    real = out.expanduser().resolve()
    if real == Path(real.anchor):
        return "the filesystem root"
    with contextlib.suppress(RuntimeError):  # no home directory
        if real == Path.home().resolve():
            return "the home directory"
    if real in Path.cwd().resolve().parents:
        return "a folder that holds the working directory"
    return None


def out_dir_outputs(out_dir: str | Path) -> set[str] | None:
    """The names sparsecheck claimed in ``out_dir`` (its marker's list), or None without a marker.

    A marker written before the list existed (plain text) returns ``{"*"}``, and keeps ``"*"`` in
    its list from then on: every output name sparsecheck writes counts as its own there, as it did.
    """
    marker = Path(out_dir) / OUT_DIR_MARKER
    if not marker.is_file() or marker.is_symlink():
        return None
    try:
        doc = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return {"*"}
    outputs = doc.get("outputs") if isinstance(doc, dict) else None
    return {str(n) for n in outputs if isinstance(n, str)} if isinstance(outputs, list) else {"*"}


def claim_out_dir(out_dir: str | Path, *, force: bool = False, note: str = "written by sparsecheck",
                  outputs: Iterable[str] = ()) -> Path:
    """Create ``out_dir``, or take over one that sparsecheck wrote before, and mark ``outputs`` (the
    files and folders the caller will write there, by name) as sparsecheck's.

    A non-empty directory without the marker is refused unless ``force``; with it, only the
    directory is shared: an output name already there that sparsecheck did not write is refused
    either way (a user's ``features/`` is never written into or removed). The filesystem root, the
    home directory and the folders that hold the working directory are refused as output
    directories.

    Raises
    ------
    ConfigError
        naming ``--out`` and what is in the way.
    """
    from sparsecheck.errors import ConfigError

    out = Path(out_dir)
    outputs = list(outputs)
    refused = _refused_out_dir(out)
    if refused is not None:
        raise ConfigError(f"{out} is {refused}; sparsecheck writes into a folder of its own there: choose another "
                          f"--out (a new folder is created)", key="--out", value=str(out))
    if out.exists() and not out.is_dir():
        raise ConfigError("exists and is not a directory", key="--out", value=str(out))
    ours = out_dir_outputs(out)
    if out.is_dir() and any(out.iterdir()) and ours is None and not force:
        raise ConfigError(f"directory {out} is not empty and was not written by sparsecheck; "
                          "choose another --out or pass --force", key="--out", value=str(out))
    ours = ours or set()
    foreign = [n for n in outputs if os.path.lexists(out / n) and n not in ours and "*" not in ours]
    if foreign:
        them = "it" if len(foreign) == 1 else "them"
        raise ConfigError(f"{', '.join(foreign)} in {out} {'is' if len(foreign) == 1 else 'are'} not sparsecheck's "
                          f"and would be overwritten; move {them} or choose another --out (--force shares a folder, "
                          f"it never replaces what you put there)", key="--out", value=str(out))
    out.mkdir(parents=True, exist_ok=True)
    if not ours >= set(outputs) or not (out / OUT_DIR_MARKER).is_file():
        text = json.dumps({"written_by": note, "outputs": sorted(ours | set(outputs))}, indent=1)
        with atomic_write(out / OUT_DIR_MARKER, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
    return out


def remove_outputs(out_dir: str | Path, names: Iterable[str]) -> None:
    """Remove the earlier outputs ``names`` from ``out_dir``, in the order given, but only those its
    marker lists as sparsecheck's (:func:`claim_out_dir`): never a file or folder a user put there."""
    import shutil

    out = Path(out_dir)
    ours = out_dir_outputs(out) or set()
    for name in names:
        path = out / name
        if not (name in ours or "*" in ours) or not os.path.lexists(path):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def release_out_dir(out_dir: str | Path) -> bool:
    """Remove ``out_dir`` if it holds nothing but sparsecheck's marker (and empty folders).

    For a run that stopped before writing anything into a directory it created: the caller decides
    that the directory is its own (it did not exist before the run); this only checks it is unused.
    Returns whether it was removed.
    """
    out = Path(out_dir)
    if not out.is_dir() or out.is_symlink() or not (out / OUT_DIR_MARKER).is_file():
        return False
    entries = sorted(out.rglob("*"), key=lambda p: len(p.parts), reverse=True)
    if any(not (e.is_dir() and not e.is_symlink()) and e != out / OUT_DIR_MARKER for e in entries):
        return False
    for e in entries:  # deepest first: the marker, then empty folders
        if e.is_dir():
            e.rmdir()
        else:
            e.unlink()
    out.rmdir()
    return True


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically (NaN becomes null)."""
    text = json.dumps(jsonable(obj), indent=2, allow_nan=False)
    with atomic_write(path, "w", encoding="utf-8") as fh:
        fh.write(text + "\n")


def jsonable(obj: Any) -> Any:
    """``obj`` with numpy values, paths and tuples made JSON-ready (non-finite floats become None)."""
    import math

    import numpy as np

    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def one_line(exc: BaseException, limit: int = 300) -> str:
    """An exception's message on one line, at most ``limit`` characters (its type when it has none)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


def exception_reason(exc: BaseException) -> str:
    """``"TypeName: message"`` on one line: the reason recorded for a step that was skipped."""
    return f"{type(exc).__name__}: {one_line(exc)}"
