"""New examples scored with a checked run's model: what ``monitor`` and ``select`` share.

A monitoring batch and a selection pool are splits the pipeline never saw; they get their metadata
here (:func:`batch_metadata`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from sparsecheck.data import load_metadata
from sparsecheck.data.precomputed import PrecomputedFeatures
from sparsecheck.errors import DataError

if TYPE_CHECKING:  # pragma: no cover
    from sparsecheck.config import Config

__all__ = ["batch_metadata"]


def batch_metadata(config: "Config", ds: Any,
                   metadata: str | Path | None) -> tuple[pd.DataFrame, str]:
    """The metadata of a monitoring batch or a selection pool, and a note when there is none.

    ``--metadata`` when given, else a Parquet features file's own columns, else the config's
    ``data.metadata`` when it covers the batch's ids; else only the ids, with a note that
    assertions on attributes cannot run.
    """
    own = ds.metadata if isinstance(ds, PrecomputedFeatures) else None  # a Parquet features file's columns
    if metadata is None and own is not None:
        return own.reset_index(drop=True), ""
    if metadata is not None:
        try:
            return load_metadata(metadata, ds.ids, id_column=config.data.id_column), ""
        except DataError as exc:
            raise DataError(f"--metadata: {exc}") from exc
    if config.data.metadata is not None:
        try:
            return load_metadata(config.data.metadata, ds.ids, id_column=config.data.id_column), ""
        except DataError:
            pass
    return pd.DataFrame({"id": ds.ids}), ("no metadata for the batch's ids (pass --metadata): assertions on "
                                          "attributes cannot run")
