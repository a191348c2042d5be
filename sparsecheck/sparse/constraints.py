"""The parameter constraints of :class:`~sparsecheck.sparse.SparseDecisionLayer`: for each parameter,
what it accepts in words (the error message says it) and the test of a value."""

from __future__ import annotations

import math
import numbers
import re
from typing import Any

import numpy as np
import torch

from sparsecheck.sparse.solvers import fista as _fista

#: the path solvers a layer may use
_SOLVERS = ("auto", "fista", "glm_saga")


def _is_real(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_device(v: Any) -> bool:
    if isinstance(v, torch.device):
        return v.type in ("cpu", "cuda")
    return isinstance(v, str) and (v in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", v) is not None)


_CONSTRAINTS: dict[str, tuple[str, Any]] = {
    "alpha": ("a float in [0, 1]", lambda v: _is_real(v) and 0 <= v <= 1),
    "n_lambdas": ("an int in the range [1, inf)", lambda v: _is_int(v) and v >= 1),
    "lambda_min_ratio": ("a float in the range (0, 1)", lambda v: _is_real(v) and 0 < v < 1),
    "tolerance": ("a float in [0, 1]", lambda v: _is_real(v) and 0 <= v <= 1),
    "features_per_class": ("None or an int in the range [1, inf)", lambda v: v is None or (_is_int(v) and v >= 1)),
    "early_stop": ("a bool", lambda v: isinstance(v, (bool, np.bool_))),
    "solver": ("a str among {'auto', 'fista', 'glm_saga'}", lambda v: isinstance(v, str) and v in _SOLVERS),
    "precision": ("a str among {'fp32', 'bf16'}", lambda v: isinstance(v, str) and v in _fista.PRECISIONS),
    "max_epochs": ("None or an int in the range [1, inf)", lambda v: v is None or (_is_int(v) and v >= 1)),
    "tol": ("None or a float in the range (0, inf)", lambda v: v is None or (_is_real(v) and v > 0)),
    "lookbehind": ("an int in the range [1, inf)", lambda v: _is_int(v) and v >= 1),
    "batch_size": ("an int in the range [1, inf)", lambda v: _is_int(v) and v >= 1),
    "step_size": ("a float in the range (0, inf)", lambda v: _is_real(v) and v > 0),
    "device": ("a str among {'auto', 'cpu', 'cuda', 'cuda:<index>'}", _is_device),
    "random_state": ("None or an int in the range [0, 4294967295]",
                     lambda v: v is None or (_is_int(v) and 0 <= v <= 2 ** 32 - 1)),
}


# ---------------------------------------------------------------------- data handling
