"""Files sparsecheck writes: atomically, into output directories it claimed, as JSON it can read back.

* :func:`atomic_write`: a temporary file renamed into place on success, so an interrupted run
  never leaves a half-written file that looks complete;
* :func:`claim_out_dir`, :func:`remove_outputs`, :func:`release_out_dir`: an output directory is
  sparsecheck's only when its marker (:data:`OUT_DIR_MARKER`) says so, and only the names it lists
  are ever overwritten or removed: a user's files never are;
* :func:`jsonable` (the one converter of numpy values, paths and non-finite floats to JSON) and
  :func:`write_json_atomic`; :func:`check_out_file` and :func:`write_csv` for single output files.

Examples
--------
>>> import numpy as np
>>> jsonable({"a": np.float32(0.5), "b": (1, float("nan")), 3: np.arange(2)})
{'a': 0.5, 'b': [1, None], '3': [0, 1]}
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import pandas as pd

from sparsecheck.errors import ConfigError

__all__ = ["atomic_write", "write_json_atomic", "jsonable", "claim_out_dir", "release_out_dir", "remove_outputs",
           "out_dir_outputs", "OUT_DIR_MARKER", "check_out_file", "write_csv"]


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


def native(value: Any) -> Any:
    """A numpy scalar as the Python value it holds; anything else as it is.

    >>> native(np.int64(3)), native("a")
    (3, 'a')
    """
    return value.item() if isinstance(value, np.generic) else value


def jsonable(obj: Any) -> Any:
    """``obj`` with numpy values, paths and tuples made JSON-ready (non-finite floats become None)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    obj = native(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def check_out_file(path: str | Path, *, force: bool = False, option: str = "--out") -> Path:
    """Refuse to overwrite an existing output file unless ``force`` (before any work is done).

    Raises
    ------
    ConfigError
        ``path`` exists (and ``force`` is False), or is a directory, naming ``option``.
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path} is a directory; give a CSV file name", key=option, value=str(path))
    if path.exists() and not force:
        raise ConfigError(f"{path} exists; pass --force to overwrite it", key=option, value=str(path))
    return path


def write_csv(frame: pd.DataFrame, path: str | Path, *, force: bool = False, option: str = "--out") -> Path:
    """Write ``frame`` as CSV atomically, after :func:`check_out_file`."""
    path = check_out_file(path, force=force, option=option)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "w", encoding="utf-8", newline="") as fh:
        frame.to_csv(fh, index=False, float_format="%.6g")
    return path
