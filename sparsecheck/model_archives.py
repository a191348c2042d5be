"""What a model file may hold before it is loaded: no pickle that loading would run as code.

``torch.export.load`` unpickles with ``weights_only=False`` every weight or constant its payload
config marks ``use_pickle`` (and every custom or opaque object), falls back to ``weights_only=False``
for sample inputs and legacy weight files that the restricted unpickler refuses, and loads any
AOTInductor library bundled under ``data/aotinductor/``: a crafted ``.pt2`` runs its payload while
it loads. :func:`check_pt2_archive` reads the zip archive first and refuses it unless every entry is
one of

* a raw tensor record named by a weights or constants config that does not use pickle,
* short text metadata (``archive_format``, ``byteorder``, ...) or JSON (the graph, the configs),
* a ``torch.save`` record the restricted ``weights_only`` unpickler accepts (sample inputs),
* an ``extra/`` file that is not a pickle.

TorchScript files are read by TorchScript's own restricted unpickler; what they can carry beyond it
is ``extra/`` files (``torch.jit.save(..., _extra_files=...)``), which whoever reads them may
unpickle: :func:`check_torchscript_archive` refuses those that are pickles.

``trust_pickle=True`` (``--trust-pickle``, ``model.trust_pickle: true``) skips the refusal and
logs :data:`UNPICKLE_WARNING` instead. Refusals are :class:`~sparsecheck.errors.ModelError` (exit 2)
naming the archive entry.

The same rule (a whitelist of entries, ``weights_only`` for the rest) is what MLflow applies to the
``pt2`` models it loads when ``MLFLOW_ALLOW_PICKLE_DESERIALIZATION`` is false.
"""

from __future__ import annotations

import io
import json
import logging
import pickletools
import re
import zipfile
from pathlib import Path
from typing import IO, Iterator, Union

from sparsecheck.errors import ModelError

logger = logging.getLogger(__name__)

__all__ = ["check_pt2_archive", "check_torchscript_archive", "is_executable_pickle", "warn_unpickling",
           "UNPICKLE_WARNING"]

#: logged when a model file is loaded although it holds pickles (mirrors MLflow's warning on saving one)
UNPICKLE_WARNING = ("%s: loading it unpickles %s; pickle relies on Python's object serialization mechanism, "
                    "which can execute arbitrary code during deserialization: load only files you trust")

_TRUST_HINT = ("refused, as loading would run it as code: pass --trust-pickle (model.trust_pickle: true) only if "
               "you made this file or trust who did")
_TEXT_RECORD = re.compile(rb"[A-Za-z0-9._-]{1,64}\n?")
_PAYLOAD_CONFIG = re.compile(r"^data/(weights|constants)/[^/]+_config\.json$")
_RAW_PREFIXES = ("weight_", "tensor_")  # records with other prefixes (custom_obj_, opaque_obj_) are always unpickled
_CODE_OPCODES = {"GLOBAL", "STACK_GLOBAL", "REDUCE", "INST", "OBJ", "NEWOBJ", "NEWOBJ_EX", "BUILD", "EXT1", "EXT2",
                 "EXT4"}
_STRING_OPCODES = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "STRING", "BINSTRING",
                   "SHORT_BINSTRING"}
_MEMO_OPCODES = {"MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT", "GET", "BINGET", "LONG_BINGET"}


def warn_unpickling(path: str | Path, what: str) -> None:
    """Log :data:`UNPICKLE_WARNING` for ``path`` (the user passed ``--trust-pickle``)."""
    logger.warning(UNPICKLE_WARNING, path, what)


def is_executable_pickle(content: bytes) -> bool:
    """True when ``content`` is a pickle stream that imports or calls something, or a ``torch.save``
    checkpoint (a zip archive holding ``data.pkl``).

    >>> import pickle
    >>> is_executable_pickle(pickle.dumps({"a": 1})), is_executable_pickle(pickle.dumps(Path("x")))
    (False, True)
    >>> is_executable_pickle(b'{"a": 1}'), is_executable_pickle(b"cos\\nsystem\\n(S'true'\\ntR.")
    (False, True)
    """
    if content[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(io.BytesIO(content)) as inner:
                return any(n.rsplit("/", 1)[-1] == "data.pkl" for n in inner.namelist())
        except zipfile.BadZipFile:
            return False
    try:
        ops = [op.name for op, _arg, _pos in pickletools.genops(io.BytesIO(content))]
    except Exception:  # not a pickle stream (text, JSON, raw bytes); genops raises ValueError and others
        return False
    return bool(ops) and ops[-1] == "STOP" and any(op in _CODE_OPCODES for op in ops)


def _entries(archive: zipfile.ZipFile) -> Iterator[tuple[str, zipfile.ZipInfo]]:
    """(name inside the archive's root folder, info) of every file: torch writes ``ROOT/data/...``."""
    for info in archive.infolist():
        if info.is_dir():
            continue
        name = info.filename.replace("\\", "/")
        yield (name.split("/", 1)[1] if "/" in name else name), info


def _refuse(path: Path, entry: str, what: str) -> ModelError:
    return ModelError(f"archive entry {entry}: {what}; {_TRUST_HINT}", path=path)


def _pickle_globals(data: bytes) -> set[str]:
    """``module.name`` of every global a pickle stream imports (a STACK_GLOBAL whose operands are not
    string literals comes back as ``"?"``)."""
    found: set[str] = set()
    strings: list[str] = []
    for op, arg, _pos in pickletools.genops(io.BytesIO(data)):
        if op.name == "GLOBAL":
            found.add(str(arg).replace(" ", "."))
        elif op.name == "STACK_GLOBAL":
            found.add(".".join(strings[-2:]) if len(strings) >= 2 else "?")
            strings = []
        elif op.name in _STRING_OPCODES:
            strings.append(str(arg))
        elif op.name not in _MEMO_OPCODES:
            strings = []
    return found


def _weights_only_refusal(content: bytes) -> str | None:
    """Why torch's restricted unpickler refuses ``content`` (a ``torch.save`` record), or None.

    Globals a program registered with ``torch.serialization.add_safe_globals`` are accepted by that
    unpickler too, and may run code: a record that references one (or cannot be read to tell) is
    refused without being unpickled.
    """
    import torch

    registered = {f"{g.__module__}.{g.__qualname__}" if not isinstance(g, tuple) else str(g[1])
                  for g in torch.serialization.get_safe_globals()}
    if registered:
        try:
            with zipfile.ZipFile(io.BytesIO(content)) as inner:
                pickles = [inner.read(n) for n in inner.namelist() if n.rsplit("/", 1)[-1] == "data.pkl"]
            referenced = set().union(*(_pickle_globals(p) for p in pickles)) if pickles else {"?"}
        except Exception:
            referenced = {"?"}
        if referenced & (registered | {"?"}):
            return "it references globals registered with torch.serialization.add_safe_globals"
    try:
        torch.load(io.BytesIO(content), map_location="cpu", weights_only=True)
    except Exception as exc:
        text = " ".join(str(exc).split())
        found = re.search(r"GLOBAL ([\w.]+)", text)  # "Trying to load unsupported GLOBAL posix.system ..."
        return f"it imports {found.group(1).rstrip('.')}" if found else (text[:160] or type(exc).__name__)
    return None


#: a model file: its path, or the file opened in binary mode (checked and then loaded from the same handle)
Source = Union[str, Path, IO[bytes]]


def _name(source: Source, name: str | Path | None) -> Path:
    return Path(name if name is not None else source if isinstance(source, (str, Path)) else "<model file>")


def _open(source: Source, path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ModelError(f"not a torch.export program (not a zip archive: {exc}); save one with "
                         f"torch.export.save(torch.export.export(model, (x,)), path)", path=path) from exc


def check_pt2_archive(source: Source, *, trust_pickle: bool = False, name: str | Path | None = None) -> list[str]:
    """Refuse a ``torch.export`` archive whose loading would unpickle or run code (see the module
    docstring); return the entries that would be unpickled (empty for a plain ``.pt2``).

    With ``trust_pickle`` the entries are returned, and :data:`UNPICKLE_WARNING` logged, instead.
    ``source`` is a path or a binary file (``name`` is then what messages call it).

    Raises
    ------
    ModelError
        naming the archive and the first offending entry.
    """
    path = _name(source, name)
    offending: list[tuple[str, str]] = []
    with _open(source, path) as archive:
        entries = dict(_entries(archive))
        raw: set[str] = set()
        for name, info in entries.items():
            match = _PAYLOAD_CONFIG.match(name)
            if not match:
                continue
            kind = "weight" if match.group(1) == "weights" else "constant"
            try:
                config = json.loads(archive.read(info).decode("utf-8"))["config"]
                items = list(config.items())
            except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as exc:
                raise ModelError(f"archive entry {name}: not a payload config ({type(exc).__name__}: {exc})",
                                 path=path) from exc
            for fqn, meta in items:
                record = f"data/{match.group(1)}/{meta.get('path_name', '?') if isinstance(meta, dict) else '?'}"
                if not isinstance(meta, dict) or meta.get("use_pickle") is not False:
                    offending.append((record, f"{kind} {fqn!r} is stored with use_pickle (a pickle)"))
                elif not str(meta.get("path_name", "")).startswith(_RAW_PREFIXES):
                    offending.append((record, f"{kind} {fqn!r} is a custom or opaque object (a pickle)"))
                else:
                    raw.add(record)
        named = {entry for entry, _ in offending}
        for name, info in entries.items():
            if name in raw or name in named:
                continue  # raw tensor bytes, read as such; or refused above
            if name.startswith("data/aotinductor/"):
                offending.append((name, "AOTInductor-compiled code (a shared library loading would run)"))
                continue
            content = archive.read(info)
            if _TEXT_RECORD.fullmatch(content):
                continue
            if name.startswith("extra/"):
                if is_executable_pickle(content):
                    offending.append((name, "an extra file that is a pickle"))
                continue
            try:
                json.loads(content.decode("utf-8"))
                continue
            except (UnicodeDecodeError, ValueError):
                pass
            why = _weights_only_refusal(content)
            if why is not None:
                what = "sample inputs" if name.startswith("data/sample_inputs/") else "a record"
                offending.append((name, f"{what} that torch's weights_only unpickler refuses ({why}), "
                                        f"so torch.export.load would unpickle them in full"))
    return _verdict(path, offending, trust_pickle)


def check_torchscript_archive(source: Source, *, trust_pickle: bool = False,
                              name: str | Path | None = None) -> list[str]:
    """Refuse a TorchScript archive that carries pickled ``extra/`` files; return those entries
    (with ``trust_pickle``, after logging :data:`UNPICKLE_WARNING`)."""
    path = _name(source, name)
    if not zipfile.is_zipfile(source):
        return []  # not TorchScript at all: torch.jit.load says so
    offending: list[tuple[str, str]] = []
    with _open(source, path) as archive:
        for name, info in _entries(archive):
            if name.startswith("extra/") and is_executable_pickle(archive.read(info)):
                offending.append((name, "an extra file that is a pickle"))
    return _verdict(path, offending, trust_pickle)


def _verdict(path: Path, offending: list[tuple[str, str]], trust_pickle: bool) -> list[str]:
    if offending and not trust_pickle:
        entry, what = offending[0]
        more = f" (and {len(offending) - 1} more entries)" if len(offending) > 1 else ""
        raise _refuse(path, entry, what + more)
    if offending:
        warn_unpickling(path, ", ".join(e for e, _ in offending))
    return [e for e, _ in offending]
