"""Text datasets: CSV, TSV, Parquet and JSONL manifests, Hugging Face ``datasets`` directories, lists.

A manifest has one row per text: the text in a ``text`` column (or the one ``data.text_column``
names: SST-2's files call it ``sentence``), an optional ``label`` (a class name or an integer
index), an optional ``id`` (default ``<split>/<row>``), and any other column is per-example
metadata, used as ``data.metadata`` is. A directory written by ``datasets.Dataset.save_to_disk``
reads the same way; its ``ClassLabel`` names become the class names unless the config gives them.

Bad input is refused with a one-line :class:`~sparsecheck.errors.DataError` (exit 2) naming the
file and the row: an empty text, a missing column, bytes that are not UTF-8, a label outside the
classes. Rows are counted from 1, after the header.

Examples
--------
>>> ds = TextDataset.from_texts(["a fine film", "dull"], [1, 0], name="toy")
>>> len(ds), ds.ids.tolist(), ds.batch(slice(0, 2)).tolist()
(2, ['toy/0', 'toy/1'], ['a fine film', 'dull'])
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from sparsecheck.errors import DataError

logger = logging.getLogger(__name__)

__all__ = ["TextDataset", "load_text_dataset", "is_text_source", "TEXT_SUFFIXES", "TEXT_COLUMN"]

#: manifest formats read as text: comma- and tab-separated, Parquet, JSON lines
TEXT_SUFFIXES = {".csv", ".tsv", ".parquet", ".pq", ".jsonl", ".ndjson"}
#: the text column's name unless ``data.text_column`` says otherwise
TEXT_COLUMN = "text"
#: the largest manifest read into memory (a text dataset is held whole; a bigger one is refused)
MAX_TABLE_BYTES = 4 * 1024 ** 3


class TextDataset:
    """Texts with integer labels, string ids and per-example metadata, served as arrays of ``str``.

    Build one with :meth:`from_texts`, :meth:`from_table` or :meth:`from_disk` (or
    :func:`load_text_dataset`, which picks by path). ``batch(rows)`` returns an object array of
    the texts, which a :class:`~sparsecheck.text.models.TextInput` turns into model input.

    Attributes
    ----------
    texts : ndarray of object (str), shape (n,)
    metadata : DataFrame or None
        Per-example columns of the manifest (``id`` first), in the order of ``ids``.
    """

    modality = "text"
    in_memory = True

    def __init__(self, name: str, ids: Any, labels: Any, texts: Any, class_names: list[str] | None = None,
                 source: str = "<memory>", metadata: pd.DataFrame | None = None) -> None:
        self.name = name
        self.ids = np.asarray(ids).astype(str)
        self.labels = None if labels is None else np.asarray(labels).astype(np.int64)
        self.texts = np.asarray(list(texts), dtype=object)
        self.class_names = class_names
        self.source = source
        self.metadata = metadata
        self.skipped_unreadable: list[tuple[str, str]] = []
        self._digest: str | None = None

    # -- constructors
    @classmethod
    def from_texts(cls, texts: Sequence[str], labels: Sequence[int] | None = None, ids: Sequence[str] | None = None,
                   *, name: str = "data", class_names: list[str] | None = None,
                   metadata: pd.DataFrame | None = None) -> "TextDataset":
        """Wrap in-memory texts (and integer labels)."""
        texts = list(texts)
        _check_texts(texts, where=name)
        if labels is not None and len(labels) != len(texts):
            raise DataError(f"{len(labels)} labels for {len(texts)} texts", path=name)
        ids_arr = np.array([f"{name}/{i}" for i in range(len(texts))]) if ids is None else np.asarray(ids).astype(str)
        if len(np.unique(ids_arr)) != len(ids_arr):
            raise DataError("ids are not unique", path=name)
        if metadata is None:
            metadata = pd.DataFrame({"id": ids_arr})
        return cls(name, ids_arr, None if labels is None else np.asarray(labels, dtype=np.int64), texts,
                   class_names, "<memory>", metadata)

    @classmethod
    def from_table(cls, path: str | Path, *, name: str | None = None, text_column: str | None = None,
                   class_names: list[str] | None = None) -> "TextDataset":
        """A CSV, TSV, Parquet or JSONL manifest (module docstring)."""
        path = Path(path)
        table = read_text_table(path, text_column or TEXT_COLUMN)
        return cls._from_frame(table, path=path, name=name or path.stem, text_column=text_column or TEXT_COLUMN,
                               class_names=class_names)

    @classmethod
    def from_disk(cls, path: str | Path, *, name: str | None = None, text_column: str | None = None,
                  class_names: list[str] | None = None) -> "TextDataset":
        """A directory written by ``datasets.Dataset.save_to_disk`` (Arrow files; nothing is run)."""
        path = Path(path)
        try:
            import datasets
        except ImportError as exc:
            raise DataError("reading a Hugging Face datasets directory needs the datasets package: "
                            "pip install 'sparsecheck[text]'", path=path) from exc
        if (path / "dataset_dict.json").is_file():
            splits = json.loads((path / "dataset_dict.json").read_text(encoding="utf-8")).get("splits", [])
            raise DataError(f"a DatasetDict with splits {splits}: name one split's directory (e.g. "
                            f"{path / (splits[0] if splits else 'train')})", path=path)
        try:
            loaded = datasets.load_from_disk(str(path))
        except Exception as exc:
            raise DataError(f"not a datasets directory written by save_to_disk: {_one_line(exc)}", path=path) from exc
        names = None
        feature = loaded.features.get("label") if hasattr(loaded, "features") else None
        if feature is not None and getattr(feature, "names", None):
            names = [str(n) for n in feature.names]
        table = loaded.to_pandas()
        column = text_column or TEXT_COLUMN
        if column not in table.columns:
            raise DataError(_missing_column(column, list(table.columns)), path=path)
        if names is not None and "label" in table.columns:  # ClassLabel indices: their names are the classes
            table["label"] = table["label"].astype("Int64").astype(str)
            if class_names is None:
                class_names = names
            elif list(class_names) != names:
                logger.warning("%s: its ClassLabel names %s differ from data.class_names %s; reading its labels as "
                               "indices into data.class_names", path, names, class_names)
        return cls._from_frame(table, path=path, name=name or path.name, text_column=column, class_names=class_names)

    @classmethod
    def _from_frame(cls, table: pd.DataFrame, *, path: Path, name: str, text_column: str,
                    class_names: list[str] | None) -> "TextDataset":
        if text_column not in table.columns:
            raise DataError(_missing_column(text_column, list(table.columns)), path=path)
        if table.empty:
            raise DataError("the manifest has no rows", path=path)
        texts = _text_values(table[text_column], path)
        if "id" in table.columns:
            if table["id"].isna().any():
                row = int(np.flatnonzero(table["id"].isna().to_numpy())[0]) + 1
                raise DataError(f"row {row}: empty id ({int(table['id'].isna().sum())} empty ids in all)", path=path)
            ids = table["id"].astype(str).to_numpy()
            dup = pd.Series(ids)[pd.Series(ids).duplicated()]
            if len(dup):
                raise DataError(f"{len(dup)} duplicated ids, e.g. {dup.head(3).tolist()}", path=path)
        else:
            ids = np.array([f"{name}/{i}" for i in range(len(table))])
        labels, names = (None, class_names) if "label" not in table.columns else \
            text_labels(table["label"], class_names, path)
        meta = table.drop(columns=[c for c in (text_column, "label", "id") if c in table.columns])
        meta.insert(0, "id", ids)
        return cls(name, ids, labels, texts, names, str(path), meta.reset_index(drop=True))

    # -- access
    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def __getitem__(self, i: int) -> tuple[str, int]:
        return self.texts[i], (-1 if self.labels is None else int(self.labels[i]))

    def text(self, i: int) -> str:
        return str(self.texts[i])

    def batch(self, index: np.ndarray | slice) -> np.ndarray:
        """The texts at ``index``, an object array of ``str``."""
        return self.texts[index]

    def _where(self, i: int) -> str:
        return f"{self.source} row {i + 1}"

    def subset(self, index: np.ndarray) -> "TextDataset":
        index = np.asarray(index)
        return TextDataset(self.name, self.ids[index], None if self.labels is None else self.labels[index],
                           self.texts[index], self.class_names, self.source,
                           None if self.metadata is None else self.metadata.iloc[index].reset_index(drop=True))

    def digest(self) -> str:
        """A hash of the ids, labels and texts (the feature cache's data key)."""
        if self._digest is None:
            h = hashlib.sha256()
            h.update("\0".join(self.ids.tolist()).encode())
            if self.labels is not None:
                h.update(self.labels.tobytes())
            for t in self.texts:
                h.update(str(t).encode("utf-8", "surrogatepass"))
                h.update(b"\0")
            self._digest = h.hexdigest()[:16]
        return self._digest

    def fingerprint(self) -> str:
        return self.digest()

    def class_counts(self) -> dict[int, int]:
        if self.labels is None:
            return {}
        values, counts = np.unique(self.labels, return_counts=True)
        return {int(v): int(c) for v, c in zip(values, counts)}

    def describe(self) -> dict[str, Any]:
        """What results.json says about the split: its size and text lengths (characters, words)."""
        words = np.array([len(str(t).split()) for t in self.texts]) if len(self) else np.zeros(1)
        chars = np.array([len(str(t)) for t in self.texts]) if len(self) else np.zeros(1)
        return {"source": self.source, "n": len(self), "kind": "text", "digest": self.digest(),
                "words": {"mean": round(float(words.mean()), 2), "max": int(words.max())},
                "characters": {"mean": round(float(chars.mean()), 2), "max": int(chars.max())}}


# --------------------------------------------------------------------------- reading
def _one_line(exc: BaseException) -> str:
    from sparsecheck._runtime import one_line

    return one_line(exc)


def _missing_column(column: str, columns: list[str]) -> str:
    hint = "" if column != TEXT_COLUMN else "; set data.text_column to the column that holds the texts"
    return f"no {column!r} column (columns: {columns}){hint}"


def _decode(path: Path, data: bytes, header: bool) -> str:
    """UTF-8 text of a manifest, or a DataError naming the row (and line) of the first bad byte."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        row = f"row {line - 1} (line {line})" if header else f"row {line}"
        raise DataError(f"{row}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); save the "
                        f"file as UTF-8", path=path) from None


def read_text_table(path: Path, text_column: str = TEXT_COLUMN) -> pd.DataFrame:
    """The rows of a CSV, TSV, Parquet or JSONL manifest, text, label and id read as strings.

    Empty cells are missing values; ``NA``, ``null`` and the like stay text.
    """
    if not path.is_file():
        raise DataError("file not found", path=path)
    size = path.stat().st_size
    if size > MAX_TABLE_BYTES:
        raise DataError(f"the manifest is {size / 2 ** 30:.1f} GiB, more than the {MAX_TABLE_BYTES // 2 ** 30} GiB "
                        f"a text split may be (it is held in memory)", path=path)
    suffix = path.suffix.lower()
    strings = {c: str for c in (text_column, "label", "id")}
    if suffix in (".parquet", ".pq"):
        try:
            return pd.read_parquet(path)
        except Exception as exc:
            raise DataError(f"cannot read Parquet: {_one_line(exc)}", path=path) from exc
    data = path.read_bytes()
    if suffix in (".jsonl", ".ndjson"):
        text = _decode(path, data, header=False)
        rows = []
        for i, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise DataError(f"row {i}: not a JSON object ({exc.msg} at column {exc.colno})", path=path) from None
            if not isinstance(row, dict):
                raise DataError(f"row {i}: a JSON {type(row).__name__}, not an object", path=path)
            rows.append(row)
        table = pd.DataFrame(rows)
        for c in ("label", "id"):
            if c in table.columns:
                table[c] = table[c].map(lambda v: None if v is None else str(v))
        return table
    text = _decode(path, data, header=True)
    sep = "\t" if suffix == ".tsv" else ","
    try:
        # TSV (GLUE's layout) has no quoting: a quote character is text
        return pd.read_csv(io.StringIO(text), sep=sep, dtype=strings, keep_default_na=False, na_values=[""],
                           quoting=csv.QUOTE_NONE if sep == "\t" else csv.QUOTE_MINIMAL)
    except Exception as exc:
        raise DataError(f"cannot read {'TSV' if sep == chr(9) else 'CSV'}: {_one_line(exc)}", path=path) from exc


def _text_values(values: pd.Series, path: Path) -> np.ndarray:
    out = values.to_numpy(dtype=object)
    for i, v in enumerate(out):
        if isinstance(v, (bytes, bytearray)):
            try:
                out[i] = v = bytes(v).decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(f"row {i + 1}: not UTF-8 text (byte 0x{v[exc.start]:02x} at offset {exc.start})",
                                path=path) from None
    _check_texts(out, where=path)
    return out


def _check_texts(texts: Sequence[Any], *, where: Any) -> None:
    empty = [i for i, t in enumerate(texts) if not isinstance(t, str) or not t.strip()]
    if empty:
        first = texts[empty[0]]
        what = "empty text" if first is None or isinstance(first, str) or _is_nan(first) else \
            f"not a text but a {type(first).__name__}"
        raise DataError(f"row {empty[0] + 1}: {what} ({len(empty)} such rows in all); every row needs a text",
                        path=where)


def _is_nan(v: Any) -> bool:
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def text_labels(values: pd.Series, class_names: list[str] | None, path: Path) -> tuple[np.ndarray, list[str] | None]:
    """Label indices from class names or integer indices; a label outside the classes is refused,
    naming its row.

    Examples
    --------
    >>> text_labels(pd.Series(["pos", "neg", "1"]), ["neg", "pos"], Path("t.csv"))[0].tolist()
    [1, 0, 1]
    >>> text_labels(pd.Series(["pos", "meh"]), ["neg", "pos"], Path("t.csv"))
    Traceback (most recent call last):
    ...
    sparsecheck.errors.DataError: t.csv: row 2: label 'meh' is not one of the classes ['neg', 'pos']
    """
    missing = values.isna().to_numpy()
    if missing.any():
        row = int(np.flatnonzero(missing)[0]) + 1
        raise DataError(f"row {row}: empty label ({int(missing.sum())} empty labels in all)", path=path)
    v = values.astype(str).str.strip()
    is_int = v.str.fullmatch(r"-?\d+").to_numpy()
    if class_names is not None:
        lookup = {c: i for i, c in enumerate(class_names)}
        named = v.isin(list(lookup)).to_numpy()
        out = np.empty(len(v), dtype=np.int64)
        for i, (s, nm, it) in enumerate(zip(v, named, is_int)):
            if nm:
                out[i] = lookup[s]
            elif it and 0 <= int(s) < len(class_names):
                out[i] = int(s)
            else:
                shown = f"index {s}" if it else repr(s)
                raise DataError(f"row {i + 1}: label {shown} is not one of the classes {list(class_names)}"
                                if not it else f"row {i + 1}: label {shown} is outside the {len(class_names)} "
                                f"classes {list(class_names)}", path=path)
        return out, list(class_names)
    if is_int.all():
        out = v.astype(np.int64).to_numpy()
        if out.min() < 0:
            row = int(np.argmin(out)) + 1
            raise DataError(f"row {row}: label index {int(out.min())} is negative", path=path)
        return out, None
    if is_int.any():
        a, b = v[is_int].iloc[0], v[~is_int].iloc[0]
        raise DataError(f"'label' mixes class names and integer indices (e.g. {a!r} and {b!r}); set "
                        f"data.class_names to say which is which", path=path)
    names = sorted(v.unique().tolist())
    return v.map({c: i for i, c in enumerate(names)}).to_numpy(np.int64), names


def is_text_source(path: str | Path) -> bool:
    """True for a path that holds texts: a manifest of :data:`TEXT_SUFFIXES` or a ``datasets`` directory."""
    p = Path(path)
    if p.is_dir():
        return any((p / f).is_file() for f in ("dataset_info.json", "state.json", "dataset_dict.json"))
    return p.suffix.lower() in TEXT_SUFFIXES


def load_text_dataset(source: str | Path | TextDataset, *, name: str | None = None, text_column: str | None = None,
                      class_names: list[str] | None = None) -> TextDataset:
    """Load a text split from a manifest (CSV, TSV, Parquet, JSONL) or a ``datasets`` directory.

    Raises
    ------
    DataError
        naming the file (and row) for a missing file or column, an empty text, bytes that are not
        UTF-8, or a label outside ``class_names``.
    """
    if isinstance(source, TextDataset):
        return source
    path = Path(source)
    if path.is_dir():
        return TextDataset.from_disk(path, name=name, text_column=text_column, class_names=class_names)
    if not path.exists():
        raise DataError("file not found", path=path)
    if path.suffix.lower() not in TEXT_SUFFIXES:
        raise DataError(f"unsupported text format {path.suffix!r} (expected one of {sorted(TEXT_SUFFIXES)} or a "
                        f"datasets directory written by save_to_disk)", path=path)
    return TextDataset.from_table(path, name=name, text_column=text_column, class_names=class_names)
