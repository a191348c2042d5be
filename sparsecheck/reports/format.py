"""How numbers read: the one set of formatters behind the report, JUnit, compare, monitor and log lines.

Every number sparsecheck shows a person goes through here, so a value reads the same in the HTML
report, a JUnit message, ``sparsecheck compare``, a monitoring page and a log line:

* a missing or non-finite value is :data:`MISSING` (``—``) everywhere;
* :func:`value`: any value in a sentence or a table cell (4 significant digits; lists and dicts as
  JSON); :func:`number`: a measurement at a fixed number of decimals, trailing zeros dropped;
* :func:`signed`, :func:`weight`: changes and weights with their sign;
* :func:`percent`, :func:`points`: shares and differences of shares;
* :func:`p_value`, :func:`p_clause`: ``< 0.001`` below a thousandth, else three decimals;
* :func:`rate`: an error rate with its interval and its support; :func:`seconds`, :func:`count`.

This module imports nothing of sparsecheck's, so the analysis, the assertions and the reports can
all use it.

Examples
--------
>>> value(None), value(float("nan")), value(0.123456), value(3), value([1, "a"])
('—', '—', '0.1235', '3', '[1, "a"]')
>>> number(0.5), number(1234567.0), number(0.00001), number(3)
('0.5', '1.23e+06', '1.00e-05', '3')
>>> percent(0.4123), percent(0.4123, 0), percent(None)
('41.2%', '41%', '—')
>>> p_value(0.0004), p_value(0.0312), p_clause(0.0004), p_clause(0.2)
('< 0.001', '0.031', 'p < 0.001', 'p = 0.200')
>>> weight(0.004), weight(-0.25), signed(3, 0), signed(0.12)
('+0.0040', '-0.25', '+3', '+0.12')
>>> rate(0.25, (0.2, 0.31), 120), points(-0.153), count(1, "slice"), count(3, "slice")
('0.250 [0.200, 0.310] (n=120)', '-15 points', '1 slice', '3 slices')
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

__all__ = ["MISSING", "finite", "value", "number", "signed", "weight", "percent", "points", "p_value", "p_clause",
           "rate", "seconds", "count", "truncate"]

#: what a missing or non-finite value reads as, everywhere
MISSING = "—"


def finite(x: Any) -> float | None:
    """``x`` as a finite float, or None (None, NaN, infinities, non-numbers, booleans)."""
    if x is None or isinstance(x, bool):
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def truncate(text: str, limit: int = 160) -> str:
    """``text`` cut to ``limit`` characters with an ellipsis."""
    return text if len(text) <= limit else text[:limit - 1] + "…"


def value(x: Any, *, signed: bool = False) -> str:
    """Any value in a sentence or a table cell: numbers to 4 significant digits (integers whole),
    booleans as ``true``/``false``, lists and dicts as JSON, missing as :data:`MISSING`."""
    if x is None:
        return MISSING
    if isinstance(x, bool):
        return str(x).lower()
    if isinstance(x, int) or (hasattr(x, "dtype") and getattr(x.dtype, "kind", "") in "iu" and not
                              getattr(x, "shape", ())):
        return f"{int(x):+d}" if signed else str(int(x))
    if isinstance(x, float) or (hasattr(x, "dtype") and getattr(x.dtype, "kind", "") == "f" and not
                                getattr(x, "shape", ())):
        v = finite(x)
        if v is None:
            return MISSING
        return f"{v:+.4g}" if signed else f"{v:.4g}"
    if isinstance(x, (Mapping, list, tuple)):
        return json.dumps(x, default=str, ensure_ascii=False)
    return str(x)


def number(x: Any, digits: int = 3) -> str:
    """A measurement: ``digits`` decimals with trailing zeros dropped; e-notation below
    ``10**-digits`` and from a million; integers whole with thousands separators."""
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x:,}"
    v = finite(x)
    if v is None:
        return MISSING
    if v != 0 and (abs(v) < 10 ** -digits or abs(v) >= 1e6):
        return f"{v:.2e}"
    text = f"{v:.{digits}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def signed(x: Any, digits: int = 2) -> str:
    """A change with its sign, at ``digits`` decimals."""
    v = finite(x)
    return MISSING if v is None else f"{v:+.{digits}f}"


def weight(x: Any) -> str:
    """A signed weight that never reads ``+0.00``: two decimals, or two significant digits when small."""
    v = finite(x)
    if v is None:
        return MISSING
    if v != 0 and abs(v) < 0.005:  # two significant digits, never in e-notation
        return f"{v:+.{1 - math.floor(math.log10(abs(v)))}f}"
    return f"{v:+.2f}"


def percent(x: Any, digits: int = 1) -> str:
    """A share in [0, 1] as a percentage with ``digits`` decimals."""
    v = finite(x)
    return MISSING if v is None else f"{100 * v:.{digits}f}%"


def points(x: Any) -> str:
    """A difference of shares in percentage points, signed and whole."""
    v = finite(x)
    if v is None:
        return MISSING
    p = 100 * v
    return f"{p:+.0f} point{'s' if round(abs(p)) != 1 else ''}"


def change(drop: Any) -> str:
    """How a probability moves, from its drop: ``falls by 7 points``, ``rises by 1 point``,
    ``stays within a point``, or ``is unknown``."""
    v = finite(drop)
    if v is None:
        return "is unknown"
    p = abs(100 * v)
    if round(p) < 1:  # what would read "0 points"
        return "stays within a point"
    unit = "point" if round(p) == 1 else "points"
    return f"falls by {p:.0f} {unit}" if v >= 0 else f"rises by {p:.0f} {unit}"


def p_value(p: Any) -> str:
    """A p- or q-value: ``< 0.001`` below a thousandth, else three decimals."""
    v = finite(p)
    if v is None:
        return MISSING
    return "< 0.001" if v < 1e-3 else f"{v:.3f}"


def p_clause(p: Any, name: str = "p") -> str:
    """``p < 0.001`` or ``p = 0.031``: :func:`p_value` in a sentence."""
    text = p_value(p)
    return f"{name} {text}" if text.startswith("<") else f"{name} = {text}"


def rate(r: Any, ci: tuple[float, float] | None, size: Any) -> str:
    """An error or accuracy rate with its interval and support: ``0.250 [0.200, 0.310] (n=120)``."""
    v = finite(r)
    if v is None:
        return MISSING
    ci_text = f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci is not None else ""
    return f"{v:.3f}{ci_text} (n={size})"


def seconds(x: Any) -> str:
    """A duration in seconds: two decimals under ten seconds, one above."""
    v = finite(x)
    if v is None:
        return MISSING
    return f"{v:.2f}" if v < 10 else f"{v:.1f}"


def count(n: int, what: str) -> str:
    """``1 slice``, ``3 slices``."""
    return f"{n} {what}{'' if n == 1 else 's'}"
