"""Metadata tables: one row per example, keyed by id, one column per attribute."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from sparsecheck.errors import DataError

logger = logging.getLogger(__name__)

__all__ = ["load_metadata", "shared_ids"]


def load_metadata(path: str | Path, ids: np.ndarray, *, id_column: str = "id") -> pd.DataFrame:
    """Read a CSV or Parquet metadata table and return its rows in the order of ``ids``.

    Ids without a row get missing values (logged as a warning with the count); a table in which no
    id finds its row is refused with a :class:`~sparsecheck.errors.DataError` showing both id forms.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError("file not found", path=path)
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            table = pd.read_parquet(path)
        else:
            table = pd.read_csv(path, dtype={id_column: str}, keep_default_na=False, na_values=[""])
    except Exception as exc:
        raise DataError(f"cannot read metadata table: {exc}", path=path) from exc
    if id_column not in table.columns:
        raise DataError(f"no {id_column!r} column (columns: {list(table.columns)})", path=path)
    table[id_column] = table[id_column].astype(str)
    dup = table[id_column][table[id_column].duplicated()]
    if len(dup):
        raise DataError(f"{len(dup)} duplicated ids, e.g. {dup.head(3).tolist()}", path=path)
    table = table.set_index(id_column)
    ids = np.asarray(ids).astype(str)
    missing = pd.Index(ids).difference(table.index)
    if len(missing) == len(ids) and len(ids):
        raise DataError(f"none of the {len(ids)} example ids has a metadata row (ids look like "
                        f"{ids[:3].tolist()}, the table's like {table.index[:3].tolist()}); check the "
                        f"{id_column!r} column", path=path)
    if len(missing):  # real tables have gaps: those examples get missing values, not a refusal
        logger.warning("%s: %d of %d example ids have no metadata row (e.g. %s); their attributes are "
                       "treated as missing", path, len(missing), len(ids), missing[:3].tolist())
    out = table.reindex(ids)
    out.index.name = id_column
    return out.reset_index()


def shared_ids(ids_by_split: dict[str, np.ndarray]) -> list[tuple[str, str, int, list[str]]]:
    """``(split_a, split_b, count, first ids)`` for every pair of splits that hold the same ids.

    The same id in two splits is one metadata row for two examples (or one example in two splits,
    a leak between training and evaluation).

    >>> shared_ids({"train": np.array(["a", "b", "c"]), "test": np.array(["c", "d", "b"])})
    [('train', 'test', 2, ['b', 'c'])]
    """
    names = list(ids_by_split)
    found = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            common = np.intersect1d(np.asarray(ids_by_split[a]).astype(str), np.asarray(ids_by_split[b]).astype(str))
            if common.size:
                found.append((a, b, int(common.size), common[:3].tolist()))
    return found
