"""What every built-in assertion shares: the failing-examples frame, number formatting, constructors."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd

from sparsecheck.assertions.context import AssertionContext
from sparsecheck.assertions.spec import Assertion

__all__ = ["examples_frame", "Head", "ClassRef"]

Head = Literal["dense", "sparse"]
ClassRef = str | int


# =========================================================================== helpers
def examples_frame(data: AssertionContext, positions: np.ndarray, severity: np.ndarray,
                   **extra: np.ndarray) -> pd.DataFrame:
    """Failing examples as a DataFrame (id, severity, extra columns), worst first, cut to
    ``data.max_examples`` rows (argpartition, so a million failing rows cost little)."""
    positions = np.asarray(positions, dtype=np.int64)
    severity = np.asarray(severity, dtype=np.float64)
    limit = data.max_examples
    if limit is not None and positions.size > limit:
        keep = np.argpartition(-severity, limit - 1)[:limit]
        positions, severity = positions[keep], severity[keep]
        extra = {k: np.asarray(v)[keep] for k, v in extra.items()}
    order = np.lexsort((positions, -severity))
    frame = pd.DataFrame({"id": data.ids[positions[order]], "severity": severity[order]})
    for k, v in extra.items():
        frame[k] = np.asarray(v)[order]
    return frame


def _fmt(v: float) -> str:
    return "nan" if v is None or not np.isfinite(v) else f"{v:.3f}"


def _list(msgs: list[str], n: int = 4) -> str:
    return "; ".join(msgs[:n]) + (f"; ... ({len(msgs) - n} more)" if len(msgs) > n else "")


def _make(type_: str, name: str | None, severity: str, description: str, **params: Any) -> Assertion:
    return Assertion.of(type_, name=name, severity=severity, description=description,
                        **{k: v for k, v in params.items() if v is not None})
