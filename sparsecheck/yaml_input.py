"""Reading a YAML config file safely: UTF-8 only (a legacy encoding is named), at most
:data:`MAX_CONFIG_BYTES`, and at most :data:`MAX_CONFIG_VALUES` values once its anchors and aliases
are expanded; what the values mean is :mod:`sparsecheck.config`'s business."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from sparsecheck.errors import ConfigError

__all__ = ["MAX_CONFIG_BYTES", "MAX_CONFIG_VALUES", "read_yaml"]

#: the largest config file read: a config is a page of settings, not data
MAX_CONFIG_BYTES = 4 * 1024 * 1024
#: the most YAML values (scalars, lists, mappings) a config may hold once its aliases are followed
MAX_CONFIG_VALUES = 200_000


class _ConfigTooLarge(Exception):
    """A config whose aliases expand past :data:`MAX_CONFIG_VALUES`, or that refers to itself."""


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader that refuses a document whose anchors and aliases expand past
    :data:`MAX_CONFIG_VALUES` values (a "billion laughs" bomb) before anything walks it."""

    def construct_document(self, node: yaml.Node) -> Any:
        _expanded_size(node, MAX_CONFIG_VALUES)
        return super().construct_document(node)


def _expanded_size(root: yaml.Node, limit: int) -> int:
    """How many values ``root`` holds with every alias expanded; counted once per node, so linear
    in the document, and stopped as soon as it passes ``limit``."""
    sizes: dict[int, int | None] = {}

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            known = sizes[key]
            if known is None:
                raise _ConfigTooLarge("an alias refers to the anchor that holds it (a recursive structure)")
            return known
        sizes[key] = None
        total = 1
        children = ([c for pair in node.value for c in pair] if isinstance(node, yaml.MappingNode)
                    else node.value if isinstance(node, yaml.SequenceNode) else [])
        for child in children:
            total += size(child)
            if total > limit:
                raise _ConfigTooLarge(f"its anchors and aliases expand to more than {limit:,} values")
        sizes[key] = total
        return total

    return size(root)


def read_yaml(path: str | Path) -> Any:
    """The YAML document of the config file at ``path``, read within the bounds above.

    Raises
    ------
    ConfigError
        for a missing, unreadable, oversized or non-UTF-8 file, or invalid YAML.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found", value=str(path)) from None
    size = path.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: config file is {size / 2**20:.1f} MiB, more than the {MAX_CONFIG_BYTES // 2**20} "
                          f"MiB a config may be; keep data (class lists, tables) in files the config names")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        guess = _guess_encoding(data)
        raise ConfigError(f"{path}: not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line}"
                          f"{f'; it reads as {guess}' if guess else ''}); save the config as UTF-8") from None
    try:
        raw = yaml.load(text, Loader=_BoundedLoader)  # noqa: S506 - a SafeLoader with a size bound
    except _ConfigTooLarge as exc:
        raise ConfigError(f"{path}: refused: {exc}; a config's aliases may expand to at most "
                          f"{MAX_CONFIG_VALUES:,} values") from None
    except RecursionError:
        raise ConfigError(f"{path}: invalid YAML: nested too deeply") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: invalid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    return raw


def _guess_encoding(data: bytes) -> str | None:
    """The legacy encoding a non-UTF-8 config most likely is (Windows-1252 is Latin-1's superset)."""
    for name, label in (("utf-16", "UTF-16"), ("cp1252", "Latin-1 (Windows-1252)"), ("latin-1", "Latin-1")):
        if name == "utf-16" and data[:2] not in (b"\xff\xfe", b"\xfe\xff"):
            continue
        try:
            data.decode(name)
        except UnicodeDecodeError:
            continue
        return label
    return None
