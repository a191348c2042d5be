"""The parameter constraints of :class:`~sparsecheck.sparse.SparseDecisionLayer`, declared once in
the way of scikit-learn's ``_parameter_constraints`` (:data:`PARAMETER_CONSTRAINTS`): the layer's
checks, the words of its error messages and the limits of the config's ``sparse`` section are all
generated from them."""

from __future__ import annotations

import numbers
import re
from typing import Any

import torch

from sparsecheck.constraints import Constraint, Interval, Options
from sparsecheck.sparse.solvers import fista as _fista

#: the path solvers a layer may use
_SOLVERS = ("auto", "fista", "glm_saga")


def _is_device(v: Any) -> bool:
    if isinstance(v, torch.device):
        return v.type in ("cpu", "cuda")
    return isinstance(v, str) and (v in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", v) is not None)


#: what each parameter of :class:`~sparsecheck.sparse.SparseDecisionLayer` accepts, stated once:
#: the layer's checks, their messages and the config's limits (``sparse.*``) all come from here.
#: ``None`` admits None, ``"boolean"`` a bool.
PARAMETER_CONSTRAINTS: dict[str, list[Constraint]] = {
    "alpha": [Interval(numbers.Real, 0, 1, "both")],
    "n_lambdas": [Interval(numbers.Integral, 1, None, "left")],
    "lambda_min_ratio": [Interval(numbers.Real, 0, 1, "neither")],
    "tolerance": [Interval(numbers.Real, 0, 1, "both")],
    "features_per_class": [None, Interval(numbers.Integral, 1, None, "left")],
    "early_stop": ["boolean"],
    "solver": [Options(_SOLVERS)],
    "precision": [Options(tuple(_fista.PRECISIONS))],
    "max_epochs": [None, Interval(numbers.Integral, 1, None, "left")],
    "tol": [None, Interval(numbers.Real, 0, None, "neither")],
    "lookbehind": [Interval(numbers.Integral, 1, None, "left")],
    "batch_size": [Interval(numbers.Integral, 1, None, "left")],
    "step_size": [Interval(numbers.Real, 0, None, "neither")],
    "device": [Options(("auto", "cpu", "cuda"), extra="'cuda:<index>'", test=_is_device)],
    "random_state": [None, Interval(numbers.Integral, 0, 2 ** 32 - 1, "both")],
}

