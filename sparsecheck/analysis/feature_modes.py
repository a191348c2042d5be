"""Automatic attributes read off the model's own features: the images a class's feature fires on.

A shortcut is a thing an image has or lacks (a watermark, a tint, a frame, a logo), so a feature that
carries one tends to fire in two modes: on the images with the cue, in every class, and off on the
rest. The pixel measures of :mod:`~sparsecheck.analysis.auto_attributes` see a cue only when it has
a shape they measure; the feature the model learned sees it whatever its shape. So, for each class,
the features its sparse layer weighs positively are split at their Otsu threshold over the test
split, and the :data:`PER_CLASS` whose two modes lie farthest apart (Ashman's D, at least
:data:`MIN_SEPARATION`) give a column ``auto:feature_<id>``, with values ``on`` and ``off``, when
the "on" mode is rare in each *other* class's training images (at most :data:`MAX_OTHERS_SHARE`).
A shortcut is tied to its class in training, so a feature that fires on it fires on few images of
any other class; a feature that grades its class's shape is bimodal too (it fires on the class),
but also on a look-alike class (on two development tasks of the tuning families, the shape
features' "on" modes held 16–39% of the other classes' training images, the cues' 2–5%, and a
feature of "four" that passed on average fired on 86% of the sevens).

The column is a *suspicion*, like every automatic attribute, and a weak one: a feature of the class
tracks it by construction. It becomes a finding only when the cue estimated from the images it marks
(:func:`~sparsecheck.analysis.cues.estimate.estimate_cue`, within classes) moves the model when put
on other classes' images, net of the control, in a sequential test (``require_intervention``).
Taking it off does not count here (the intervener measures no remover for these columns): the
difference between the class's images with and without the feature's "on" mode may be the object
itself (a seven that looks like a nine, with its stroke copied from a plain seven, is a seven
again), whereas an image of another class with the cue put on keeps its own object. The
finding's card then shows what the images have in common: the estimated region or colour mapping,
and a before/after pair. When a measured attribute marks the same images, it names the finding and
this one is listed as *also seen as* (:func:`~sparsecheck.analysis.shortcuts.pool_findings`).

Examples
--------
Feature 0 fires on a cue carried by a fifth of class 1 and by a few images of class 0; feature 1
grades class 1's shape:

>>> import numpy as np
>>> from types import SimpleNamespace
>>> rng = np.random.default_rng(0)
>>> y = rng.integers(0, 2, 600)
>>> cue = rng.random(600) < np.where(y == 1, 0.4, 0.03)
>>> X = np.c_[np.where(cue, 5.0, 0.0) + rng.normal(0, 0.4, 600), y + rng.gamma(2.0, 0.5, 600)]
>>> layer = SimpleNamespace(weight_=np.array([[0.0, -1.0], [1.0, 1.0]]))
>>> modes = feature_modes(layer, X, X, y)
>>> list(modes.test.columns), modes.separation
(['auto:feature_0'], {0: 12.2})
>>> float(((modes.test["auto:feature_0"] == "on") == cue).mean())   # the column marks the cue's images
1.0
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd

from sparsecheck.analysis.auto_attributes import AUTO_PREFIX

__all__ = ["FeatureModes", "feature_modes", "is_feature_mode", "otsu_threshold", "MIN_SEPARATION", "PER_CLASS",
           "MAX_OTHERS_SHARE"]

#: Ashman's D between a feature's two Otsu groups at least this (2 is the usual bound for two
#: clearly separated modes; a skewed activation split at its Otsu point often reaches 3 too, so
#: this keeps few features, and the most bimodal of a class's features come first)
MIN_SEPARATION = 3.0
#: the most bimodal features of each class become columns, at most this many
PER_CLASS = 2
#: the "on" mode covers at least this share of the test split, and at most 1 minus it
MIN_SHARE = 0.01
#: ... and at most this share of the training images of each class that does not use the feature
MAX_OTHERS_SHARE = 0.1
_PREFIX = f"{AUTO_PREFIX}feature_"


def is_feature_mode(attribute: str) -> bool:
    """Whether an attribute column is one of these (``auto:feature_<id>``)."""
    return str(attribute).startswith(_PREFIX)


def otsu_threshold(values: np.ndarray) -> tuple[float, float]:
    """The Otsu threshold of ``values`` (the cut that maximises the between-group variance) and
    Ashman's D of the two groups it makes (``sqrt(2) |m1 - m0| / sqrt(s1² + s0²)``).

    >>> otsu_threshold(np.array([0.0, 0.1, 0.2, 5.0, 5.1]))
    (2.6, 73.1)
    """
    s = np.sort(np.asarray(values, np.float64))
    n = s.size
    if n < 4 or s[0] == s[-1]:
        return float(s[-1]) if n else 0.0, 0.0
    cs = np.cumsum(s)
    i = np.arange(1, n)
    m0, m1 = cs[:-1] / i, (cs[-1] - cs[:-1]) / (n - i)
    k = int(np.argmax(i * (n - i) * (m0 - m1) ** 2))
    lo, hi = s[:k + 1], s[k + 1:]
    spread = np.sqrt(lo.var() + hi.var())
    d = float(np.sqrt(2) * (hi.mean() - lo.mean()) / spread) if spread > 0 else float("inf")
    return round(float((s[k] + s[k + 1]) / 2), 6), round(min(d, 1e6), 1)


@dataclasses.dataclass
class FeatureModes:
    """The columns :func:`feature_modes` made: on the test split, on the training rows given (with
    their labels), the threshold and separation of each feature."""

    test: pd.DataFrame
    train: pd.DataFrame
    train_labels: np.ndarray
    threshold: dict[int, float]
    separation: dict[int, float]

    def to_dict(self) -> dict[str, Any]:
        return {"features": [{"feature": f, "threshold": self.threshold[f], "separation": self.separation[f]}
                             for f in self.threshold]}


def feature_modes(layer: Any, features: np.ndarray, train_features: np.ndarray, train_labels: np.ndarray, *,
                  per_class: int = PER_CLASS, min_separation: float = MIN_SEPARATION) -> FeatureModes:
    """Columns ``auto:feature_<id>`` (``on``/``off``) for the most bimodal features each class
    weighs positively (module docstring).

    Parameters
    ----------
    layer : fitted sparse decision layer (``weight_``, classes × features; its classes ``0..k-1``)
    features : ndarray (n, d), the test split's features (all of them, as the layer reads them)
    train_features, train_labels : ndarray (m, d) and (m,), the training split's; the same columns
        are made for these rows, with the test split's thresholds (the training prevalence a
        finding asks for, and the other classes' share above)
    """
    weight = np.asarray(layer.weight_)
    train_labels = np.asarray(train_labels)
    chosen: dict[int, tuple[float, float]] = {}
    split: dict[int, tuple[float, float, float]] = {}  # feature → threshold, separation, share on
    for c in range(weight.shape[0]):
        ranked = []
        others = train_labels != c
        for f in np.flatnonzero(weight[c] > 0):
            f = int(f)
            if f not in chosen:
                if f not in split:
                    column = np.asarray(features[:, f])
                    t, d = otsu_threshold(column)
                    split[f] = (t, d, float((column > t).mean()))
                t, d, share = split[f]
                if d < min_separation or not MIN_SHARE <= share <= 1 - MIN_SHARE or not others.any():
                    continue
                on = np.asarray(train_features[:, f]) > t
                shares = [float(on[train_labels == k].mean()) for k in np.unique(train_labels[others])]
                if max(shares) > MAX_OTHERS_SHARE:
                    continue
                ranked.append((d, f, t))
        for d, f, t in sorted(ranked, reverse=True)[:per_class]:
            chosen[f] = (t, d)
    order = sorted(chosen)

    def columns(x: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame({f"{_PREFIX}{f}": np.where(np.asarray(x[:, f]) > chosen[f][0], "on", "off")
                             for f in order}, index=pd.RangeIndex(len(x)))

    return FeatureModes(columns(features), columns(train_features), train_labels,
                        {f: chosen[f][0] for f in order}, {f: chosen[f][1] for f in order})
