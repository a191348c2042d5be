"""Spurious reliance confirmed by intervention: put a cue on images, take it off, count what flips.

An accuracy gap between images with and without a cue is observational: few examples, and
confounded with whatever else differs between them. Where the cue can be drawn on an image, the
question can be asked directly of the model:

* **put on** — draw the cue on images of the *other* classes that lack it: how many does the
  model now take for the class (the *flip rate*), against how many it takes for the class in the
  *control* (the *baseline*), and how much does the class's probability rise?
* **take off** — on the class's *own* images that carry the cue: how much do its recall and its
  probability fall?

The control is the original image for a declared cue (:mod:`~sparsecheck.analysis.cues.library`)
and for a colour or texture estimated from the data; for a region copied from another image
(:class:`~sparsecheck.analysis.cues.Transplant`) it is the same region copied from an image
without the cue, so that the cut itself, and the donor's content there, is not counted.

**Sequential, so that a clear answer costs few images.** The images are looked at in growing
looks (34, 68, 136, ... up to ``sample``: :func:`first_look`); after each look both sides are decided when they can
be. With ``K`` looks, every test at a look is made at level ``alpha / K`` (Bonferroni over the
looks), so the chance of confirming a cue the model ignores stays below ``alpha`` however early
the test stops. A side is:

* **confirmed** when the share of images the cue turns into the class (a Wilson lower bound),
  less the share it turns away from it, exceeds ``margin``, and the paired exact McNemar test of
  those flips is significant; or when the lower bound of the mean probability rise exceeds
  ``min_rise`` (put on; 5 points by default); when the recall falls by at least ``min_fall`` with a significant
  McNemar test, or the mean probability fall's lower bound exceeds ``min_rise`` (take off);
* **ruled out** when the upper bounds of both measures are below those thresholds. Stopping for
  futility cannot confirm anything, so these bounds are one-sided 95% ones, not split over the looks.
  A cue that changes no answer is ruled out at the third look (136 images at a 2-point margin).

The finding is confirmed as soon as either side is, and the test stops there. Put-on images are
shared by every class asked about the same cue (:class:`CueTrial`): the model runs once on a cued
image, and the answer serves each class it is not an image of.

Examples
--------
A toy model that says class 1 whenever the top-left corner is bright:

>>> import numpy as np
>>> from sparsecheck.analysis.cues import Patch
>>> def predict_proba(x):
...     bright = x[:, :4, :4].mean(axis=(1, 2, 3)) > 128
...     return np.stack([~bright, bright], axis=1).astype(float) * 0.9 + 0.05
>>> rng = np.random.default_rng(0)
>>> images = rng.integers(0, 100, size=(400, 24, 24, 3), dtype=np.uint8)
>>> labels = np.r_[np.zeros(300, int), np.ones(100, int)]
>>> images[300:, :4, :4] = 255                           # the class's own images carry the cue
>>> put = Patch(region="top-left", size=0.2, colour=(255, 255, 255))
>>> remove = Patch(region="top-left", size=0.2, colour=(0, 0, 0))
>>> result = measure_intervention(predict_proba, images, labels, 1, put, remove, seed=0,
...                               class_name="one")
>>> result.flip_rate, result.baseline_rate, result.confirmed, result.n_put
(1.0, 0.0, True, 34)
>>> print(result.describe())
putting patch(top-left, 0.2, (255, 255, 255)) on 34 images of other classes turns 100% (86–100%) into
'one' (0.0% in the control) and moves its probability by +90 points (+90 to +90): confirmed at the first look
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import Any, Callable, Mapping

import numpy as np
from scipy import stats as _st

from sparsecheck.analysis.cues import Cue, parse_cue
from sparsecheck.analysis.stats import mcnemar_exact, wilson_interval
from sparsecheck.errors import DataError, ModelError, ParameterError
from sparsecheck.reports import format as fmt

logger = logging.getLogger(__name__)

__all__ = ["InterventionResult", "CueTrial", "measure_intervention", "look_sizes", "first_look"]

#: futility bounds: one-sided 95% (two-sided coverage 0.9 for the Wilson interval)
_FUTILITY = 0.90
_Z_FUTILITY = float(_st.norm.isf(0.05))


def first_look(margin: float = 0.02) -> int:
    """The first look's size for a put-on margin: a quarter of the images on which a cue that
    flips none of them is ruled out, so that the third look is where that happens.

    The one-sided 95% Wilson upper bound of 0 flips in ``n`` is ``z² / (n + z²)``; it falls to
    ``margin`` at ``n = z² (1 - margin) / margin`` (133 images for 2 points). With looks of 32, 64,
    128, 256 a cue that changes nothing missed the third look by five images and ran to 256.

    Examples
    --------
    >>> first_look(0.02), first_look(0.05)
    (34, 13)
    """
    if not 0 < margin < 1:
        raise ParameterError(f"The 'margin' parameter of first_look must be in (0, 1). Got {margin!r} instead.",
                             parameter="margin")
    null = math.ceil(_Z_FUTILITY ** 2 * (1 - margin) / margin)
    return max(8, math.ceil(null / 4))


#: the first look's size at the default margin (2 points); each next look doubles it
FIRST_LOOK = first_look(0.02)


def look_sizes(sample: int, first: int = FIRST_LOOK) -> list[int]:
    """The sizes of the looks: ``first``, doubled, up to ``sample`` (the last look is ``sample``).

    Examples
    --------
    >>> look_sizes(200), look_sizes(20)
    ([34, 68, 136, 200], [20])
    """
    sizes = []
    n = int(first)
    while n < sample:
        sizes.append(n)
        n *= 2
    return [*sizes, int(sample)]


@dataclass
class InterventionResult:
    """What putting a cue on (and taking it off) did to a model's predictions for one class.

    Attributes
    ----------
    cue, remove, control : str
        Names of the cue put on, of the one taking it off (None when not measured) and of the
        control compared with (None: the original images).
    class_index : int
        The class; ``class_name`` its name.
    n_put : int
        Other-class images the cue was put on (those looked at before the test stopped).
    flip_rate, flip_ci_low, flip_ci_high : float
        Share of them predicted as the class *with* the cue, and its Wilson interval at the
        sequential level (``confidence``).
    baseline_rate : float
        Share of the same images predicted as the class in the control.
    flipped_to, flipped_from : int
        Discordant pairs: images that became the class, and images that stopped being it.
    put_p_value : float
        One-sided exact McNemar p-value of ``flipped_to`` against ``flipped_from``.
    prob_rise, prob_rise_ci_low, prob_rise_ci_high : float
        Mean rise of the class's probability on those images, over the control (normal interval).
    n_remove : int
        Own-class images the cue was taken off (0 when not measured).
    recall_before, recall_after : float
        The class's recall on them in the control and with the cue taken off, with Wilson
        intervals (``*_ci_low/high``).
    lost, regained : int
        Images no longer / newly predicted as the class after taking the cue off.
    remove_p_value : float
        One-sided exact McNemar p-value of ``lost`` against ``regained``.
    prob_fall, prob_fall_ci_low, prob_fall_ci_high : float
        Mean fall of the class's probability on them.
    confirmed : bool
        The rule in the module docstring; ``confirmed_by`` lists ``"put"`` and/or ``"remove"``.
    margin, min_fall, min_rise, alpha, confidence : float
        The rule's parameters; ``confidence`` is the level of each look's intervals (``1 - 2 alpha / K``).
    looks, stopped_at : int
        The looks planned and the one the test stopped at (1-based).
    images : int
        Images the model ran on for this class (cued, controls and removals; put-on images
        shared with other classes counted once, where they were first needed).
    cue_estimate : dict or None
        How the cue was learned from the data (:meth:`~sparsecheck.analysis.cues.CueEstimate.to_dict`,
        with ``image``: its picture, relative to the run's output directory); None for a declared cue.
    noun : str
        What one example is called in :meth:`describe` (``"image"``, ``"text"``: the run's modality).
    """

    cue: str
    remove: str | None
    control: str | None
    class_index: int
    class_name: str
    n_put: int
    flip_rate: float
    flip_ci_low: float
    flip_ci_high: float
    baseline_rate: float
    flipped_to: int
    flipped_from: int
    put_p_value: float
    prob_rise: float
    prob_rise_ci_low: float
    prob_rise_ci_high: float
    n_remove: int
    recall_before: float
    recall_before_ci_low: float
    recall_before_ci_high: float
    recall_after: float
    recall_after_ci_low: float
    recall_after_ci_high: float
    lost: int
    regained: int
    remove_p_value: float
    prob_fall: float
    prob_fall_ci_low: float
    prob_fall_ci_high: float
    confirmed: bool
    confirmed_by: list[str]
    margin: float
    min_fall: float
    min_rise: float
    alpha: float
    confidence: float
    looks: int
    stopped_at: int
    images: int
    cue_estimate: dict[str, Any] | None = None
    #: what one example is called in :meth:`describe` ("image", "text")
    noun: str = "image"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready evidence for a finding (NaN becomes None)."""
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(self).items()}

    def describe(self) -> str:
        """One sentence: "putting ... on 1,800 images of other classes turns 41% (39–43%) into 'seven'
        (0.4% in the control); taking it off ... lowers recall from ... to ...: confirmed"."""
        parts = []
        if self.n_put:
            parts.append(f"putting {self.cue} on {self.n_put:,} {self.noun}s of other classes turns {_pct(self.flip_rate)} "
                         f"({_pct(self.flip_ci_low, False)}–{_pct(self.flip_ci_high)}) into '{self.class_name}' "
                         f"({_pct(self.baseline_rate)} in the control) and moves its probability by "
                         f"{_points(self.prob_rise, self.prob_rise_ci_low, self.prob_rise_ci_high)}")
        if self.n_remove:
            verb = ("lowers" if self.recall_after < self.recall_before else
                    "raises" if self.recall_after > self.recall_before else "leaves")
            change = (f"{verb} recall from {_pct(self.recall_before)} to {_pct(self.recall_after)}" if verb != "leaves"
                      else f"leaves recall at {_pct(self.recall_before)}")
            parts.append(f"taking it off {self.n_remove:,} '{self.class_name}' {self.noun}s {change} "
                         f"({_p(self.remove_p_value)}) and moves its probability by "
                         f"{_points(-self.prob_fall, -self.prob_fall_ci_high, -self.prob_fall_ci_low)}")
        verdict = "confirmed" if self.confirmed else "not confirmed"
        if self.looks > 1:
            verdict += (" at the first look" if self.stopped_at == 1 else
                        f" after {self.stopped_at} of {self.looks} looks")
        elif self.confirmed:
            verdict += " at the first look"
        return "; ".join(parts) + f": {verdict}" if parts else f"no {self.noun}s to intervene on: {verdict}"


def _pct(v: float, sign: bool = True) -> str:
    if not math.isfinite(v):
        return "n/a"
    p = 100 * v
    return (f"{p:.1f}" if p < 10 else f"{p:.0f}") + ("%" if sign else "")


def _points(mean: float, lo: float, hi: float) -> str:
    """A mean probability change and its interval, in percentage points: "+12 points (6 to 18)"."""
    if not math.isfinite(mean):
        return "n/a"
    return f"{100 * mean:+.0f} points ({100 * lo:+.0f} to {100 * hi:+.0f})"


_p = fmt.p_clause


def _check(predict: np.ndarray, n: int) -> np.ndarray:
    p = np.asarray(predict, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] != n:
        raise ModelError(f"predict_proba returned shape {p.shape} for {n} images; expected ({n}, k)")
    return p


def _mean_bounds(v: np.ndarray, z: float) -> tuple[float, float, float]:
    if v.size == 0:
        return float("nan"), float("nan"), float("nan")
    m = float(v.mean())
    se = float(v.std(ddof=1) / np.sqrt(v.size)) if v.size > 1 else float("inf")
    return m, m - z * se, m + z * se


class CueTrial:
    """One cue's intervention on one image set, shared by every class asked about it.

    Parameters
    ----------
    predict_proba : callable
        uint8 images (b, H, W[, C]) → class probabilities (b, k) (the model, input transform
        included); called on batches of at most ``batch_size``.
    images : array-like uint8 (n, H, W[, C])
        Indexable by an array of rows (a memory map or a lazy dataset).
    labels : ndarray (n,)
        True labels (class indices).
    put, remove : Cue or config mapping
        The cue to put on other classes' images; the one that takes it off the class's own
        (None: no take-off). Their :attr:`~sparsecheck.analysis.cues.Cue.control`, where they
        have one, is what the cued images are compared with; else the original images.
    has_cue : ndarray (n,) bool, optional
        Which images carry the cue: it is put on images without it and taken off images with it.
        Default: put on every image of another class, taken off every image of the class.
    base_probs : ndarray (n, k), optional
        The model's probabilities on the original images, when known (from the feature
        extraction): the original images then cost no forward pass.
    sample : int
        At most this many images on each side.
    batch_size, seed, alpha, margin, min_fall, min_rise
        See the module docstring.
    noun : str
        What one example is called in the result's sentence (``"image"``; ``"text"``). ``images``
        may be any indexable batch of examples the cues apply to (texts: an object array of ``str``).
    """

    def __init__(self, predict_proba: Callable[[np.ndarray], np.ndarray], images: Any, labels: np.ndarray,
                 put: Cue | Mapping[str, Any], remove: Cue | Mapping[str, Any] | None = None, *,
                 has_cue: np.ndarray | None = None, base_probs: np.ndarray | None = None, sample: int = 2000,
                 batch_size: int = 256, seed: int = 0, alpha: float = 0.05, margin: float = 0.02,
                 min_fall: float = 0.05, min_rise: float = 0.05, noun: str = "image") -> None:
        self.predict_proba = predict_proba
        self.noun = str(noun)
        self.images = images
        self.labels = np.asarray(labels)
        n = len(self.labels)
        if images.shape[0] != n:
            raise DataError(f"images have {images.shape[0]} rows but labels {n}")
        for name, v, ok in (("batch_size", batch_size, int(batch_size) >= 1), ("sample", sample, int(sample) >= 1),
                            ("alpha", alpha, 0 < alpha < 1)):
            if not ok:
                raise ParameterError(f"The {name!r} parameter of CueTrial is out of range. Got {v!r} instead.",
                                     parameter=name)
        # a cue object of any modality passes as it is; a mapping is an image cue's config form
        self.put = put if hasattr(put, "apply_labelled") else parse_cue(put, key="put")
        self.remove = (None if remove is None else remove if hasattr(remove, "apply_labelled")
                       else parse_cue(remove, key="remove"))
        self.has = (np.zeros(n, bool) if has_cue is None else np.asarray(has_cue, bool))
        if self.has.shape != (n,):
            raise DataError(f"has_cue must have shape ({n},), got {self.has.shape}")
        self.explicit = has_cue is not None
        self.base_probs = None if base_probs is None else np.asarray(base_probs, np.float64)
        self.batch_size, self.sample, self.seed = int(batch_size), int(sample), int(seed)
        self.alpha, self.margin, self.min_fall, self.min_rise = float(alpha), float(margin), float(min_fall), \
            float(min_rise)
        rng = np.random.default_rng(seed)
        self._order = rng.permutation(np.flatnonzero(~self.has))   # put-on targets, in the order looked at
        self._put_done = 0
        self._put_cue: list[np.ndarray] = []
        self._put_ctrl: list[np.ndarray] = []
        self.images_used = 0

    # -------------------------------------------------------------- model calls
    def _probs(self, x: np.ndarray) -> np.ndarray:
        out = []
        for i in range(0, len(x), self.batch_size):
            b = x[i:i + self.batch_size]
            out.append(_check(self.predict_proba(b), len(b)))
            self.images_used += len(b)
        return np.concatenate(out) if out else np.zeros((0, 0))

    def _original(self, rows: np.ndarray, x: np.ndarray) -> np.ndarray:
        if self.base_probs is not None:
            return self.base_probs[rows]
        return self._probs(x)

    def _cued(self, cue: Cue, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities with ``cue`` and in its control, on ``rows`` (read and cued batch by batch)."""
        with_cue, control = [], []
        ctrl = cue.control
        for i in range(0, len(rows), self.batch_size):
            r = np.sort(rows[i:i + self.batch_size])
            order = np.argsort(np.argsort(rows[i:i + self.batch_size]))
            x = np.asarray(self.images[r])
            lab = self.labels[r]
            with_cue.append(self._probs(cue.apply_labelled(x, lab))[order])
            control.append((self._probs(ctrl.apply_labelled(x, lab)) if ctrl is not None
                            else self._original(r, x))[order])
        k = with_cue[0].shape[1] if with_cue else 0
        cat = lambda parts: np.concatenate(parts) if parts else np.zeros((0, k))  # noqa: E731
        return cat(with_cue), cat(control)

    def _extend_put(self, upto: int) -> None:
        """Cue the first ``upto`` put-on targets (shared by all classes)."""
        upto = min(upto, len(self._order))
        if upto > self._put_done:
            rows = self._order[self._put_done:upto]
            a, b = self._cued(self.put, rows)
            self._put_cue.append(a)
            self._put_ctrl.append(b)
            self._put_done = upto

    # -------------------------------------------------------------- the test of one class
    def measure(self, class_index: int, class_name: str | None = None) -> InterventionResult:
        """Run the sequential test for ``class_index`` (module docstring) and return its result."""
        c = int(class_index)
        used_before = self.images_used
        other = self.labels[self._order] != c
        n_targets = int(other.sum())
        first = first_look(self.margin)
        put_sizes = look_sizes(min(self.sample, n_targets), first) if n_targets else []
        own = np.flatnonzero((self.labels == c) & (self.has if self.explicit else True))
        own = np.random.default_rng([self.seed, c]).permutation(own)[:self.sample]
        rm_sizes = look_sizes(len(own), first) if (self.remove is not None and len(own)) else []
        looks = max(len(put_sizes), len(rm_sizes), 1)
        a_look = self.alpha / looks
        z = float(_st.norm.isf(a_look))
        conf = 1.0 - 2.0 * a_look
        put_state: dict[str, Any] = {}
        rm_state: dict[str, Any] = {}
        rm_cue: list[np.ndarray] = []
        rm_ctrl: list[np.ndarray] = []
        rm_done = 0
        put_open, rm_open = bool(put_sizes), bool(rm_sizes)
        by: list[str] = []
        stopped = looks
        for look in range(looks):
            if put_open:
                need = put_sizes[min(look, len(put_sizes) - 1)]
                # the shared order holds other classes' targets and this class's: cue until enough of ours
                cum = np.cumsum(other)
                upto = int(np.searchsorted(cum, need) + 1) if cum[-1] >= need else len(other)
                self._extend_put(upto)
                cued = np.concatenate(self._put_cue)[:upto][other[:upto]][:need]
                ctrl = np.concatenate(self._put_ctrl)[:upto][other[:upto]][:need]
                put_state = self._put_stats(cued, ctrl, c, z, conf)
                if put_state["confirmed"]:
                    by.append("put")
                put_open = not (put_state["confirmed"] or put_state["ruled_out"]) and look + 1 < len(put_sizes)
            if rm_open and not by:
                need = rm_sizes[min(look, len(rm_sizes) - 1)]
                if need > rm_done:
                    a, b = self._cued(self.remove, own[rm_done:need])  # type: ignore[arg-type]
                    rm_cue.append(a)
                    rm_ctrl.append(b)
                    rm_done = need
                rm_state = self._remove_stats(np.concatenate(rm_cue), np.concatenate(rm_ctrl), c, z, conf)
                if rm_state["confirmed"]:
                    by.append("remove")
                rm_open = not (rm_state["confirmed"] or rm_state["ruled_out"]) and look + 1 < len(rm_sizes)
            if by or not (put_open or rm_open):
                stopped = look + 1
                break
        nan = float("nan")
        ps = put_state or {"n": 0, "rate": nan, "lo": nan, "hi": nan, "base": nan, "to": 0, "from": 0, "p": 1.0,
                           "rise": (nan, nan, nan)}
        rs = rm_state or {"n": 0, "before": (nan, nan, nan), "after": (nan, nan, nan), "lost": 0, "regained": 0,
                          "p": 1.0, "fall": (nan, nan, nan)}
        ctrl_cue = self.put.control
        result = InterventionResult(
            cue=self.put.name, remove=None if self.remove is None else self.remove.name,
            control=None if ctrl_cue is None else ctrl_cue.name, class_index=c,
            class_name=str(c if class_name is None else class_name), n_put=int(ps["n"]), flip_rate=ps["rate"],
            flip_ci_low=ps["lo"], flip_ci_high=ps["hi"], baseline_rate=ps["base"], flipped_to=int(ps["to"]),
            flipped_from=int(ps["from"]), put_p_value=float(ps["p"]), prob_rise=ps["rise"][0],
            prob_rise_ci_low=ps["rise"][1], prob_rise_ci_high=ps["rise"][2], n_remove=int(rs["n"]),
            recall_before=rs["before"][0], recall_before_ci_low=rs["before"][1], recall_before_ci_high=rs["before"][2],
            recall_after=rs["after"][0], recall_after_ci_low=rs["after"][1], recall_after_ci_high=rs["after"][2],
            lost=int(rs["lost"]), regained=int(rs["regained"]), remove_p_value=float(rs["p"]), prob_fall=rs["fall"][0],
            prob_fall_ci_low=rs["fall"][1], prob_fall_ci_high=rs["fall"][2], confirmed=bool(by), confirmed_by=by,
            margin=self.margin, min_fall=self.min_fall, min_rise=self.min_rise, alpha=self.alpha, confidence=conf,
            looks=looks, stopped_at=stopped, images=self.images_used - used_before, noun=self.noun)
        logger.info("intervention %s on class %s: %s", self.put.name, result.class_name, result.describe())
        return result

    def example(self, class_index: int) -> tuple[int, np.ndarray, np.ndarray] | None:
        """A put-on target of another class to show: one the cue turned into ``class_index`` (and its
        control did not) if any, else the first; ``(row, probabilities with the cue, in the control)``."""
        if not self._put_done:
            return None
        rows = self._order[:self._put_done]
        cued, ctrl = np.concatenate(self._put_cue), np.concatenate(self._put_ctrl)
        c = int(class_index)
        ok = self.labels[rows] != c
        flipped = np.flatnonzero(ok & (cued.argmax(1) == c) & (ctrl.argmax(1) != c))
        pick = flipped[0] if flipped.size else (np.flatnonzero(ok)[0] if ok.any() else None)
        return None if pick is None else (int(rows[pick]), cued[pick], ctrl[pick])

    def _put_stats(self, cued: np.ndarray, ctrl: np.ndarray, c: int, z: float, conf: float) -> dict[str, Any]:
        after = cued.argmax(1) == c
        before = ctrl.argmax(1) == c
        n = len(after)
        k = int(after.sum())
        lo, hi = wilson_interval(np.array([k]), np.array([n]), conf)
        to, frm = int((after & ~before).sum()), int((before & ~after).sum())
        p = mcnemar_exact(to, frm)
        rise = _mean_bounds(cued[:, c] - ctrl[:, c], z)
        base = float(before.mean())
        a_look = (1 - conf) / 2
        # paired: the images the cue turned into the class, less those it turned away, per image
        (to_lo,), _ = wilson_interval(np.array([to]), np.array([n]), conf)
        confirmed = (float(to_lo) - frm / n > self.margin and p < a_look) or rise[1] > self.min_rise
        _, (to_hi95,) = wilson_interval(np.array([to]), np.array([n]), _FUTILITY)
        rise95 = _mean_bounds(cued[:, c] - ctrl[:, c], _Z_FUTILITY)
        ruled_out = float(to_hi95) - frm / n <= self.margin and rise95[2] <= self.min_rise
        return {"n": n, "rate": k / n, "lo": float(lo[0]), "hi": float(hi[0]), "base": base, "to": to, "from": frm,
                "p": p, "rise": rise, "confirmed": bool(confirmed), "ruled_out": bool(ruled_out)}

    def _remove_stats(self, cued: np.ndarray, ctrl: np.ndarray, c: int, z: float, conf: float) -> dict[str, Any]:
        after = cued.argmax(1) == c
        before = ctrl.argmax(1) == c
        n = len(after)
        (b_lo, a_lo), (b_hi, a_hi) = wilson_interval(np.array([before.sum(), after.sum()]), np.array([n, n]), conf)
        lost, regained = int((before & ~after).sum()), int((after & ~before).sum())
        p = mcnemar_exact(lost, regained)
        fall = _mean_bounds(ctrl[:, c] - cued[:, c], z)
        a_look = (1 - conf) / 2
        confirmed = (float(before.mean() - after.mean()) >= self.min_fall and p < a_look) or fall[1] > self.min_rise
        _, (lost_hi95,) = wilson_interval(np.array([lost]), np.array([n]), _FUTILITY)
        fall95 = _mean_bounds(ctrl[:, c] - cued[:, c], _Z_FUTILITY)
        ruled_out = float(lost_hi95) - regained / n < self.min_fall and fall95[2] <= self.min_rise
        return {"n": n, "before": (float(before.mean()), float(b_lo), float(b_hi)),
                "after": (float(after.mean()), float(a_lo), float(a_hi)), "lost": lost, "regained": regained, "p": p,
                "fall": fall, "confirmed": bool(confirmed), "ruled_out": bool(ruled_out)}


def measure_intervention(
    predict_proba: Callable[[np.ndarray], np.ndarray],
    images: np.ndarray,
    labels: np.ndarray,
    class_index: int,
    put: Cue | Mapping[str, Any],
    remove: Cue | Mapping[str, Any] | None = None,
    *,
    has_cue: np.ndarray | None = None,
    base_probs: np.ndarray | None = None,
    sample: int | None = None,
    batch_size: int = 256,
    seed: int = 0,
    alpha: float = 0.05,
    margin: float = 0.02,
    min_fall: float = 0.05,
    min_rise: float = 0.05,
    class_name: str | None = None,
) -> InterventionResult:
    """Put a cue on other classes' images and take it off the class's own; measure the model
    sequentially (one :class:`CueTrial`, one class; the parameters are the trial's).

    ``sample`` (default: every image) bounds each side.
    """
    trial = CueTrial(predict_proba, images, labels, put, remove, has_cue=has_cue, base_probs=base_probs,
                     sample=sample if sample is not None else max(1, len(labels)), batch_size=batch_size, seed=seed,
                     alpha=alpha, margin=margin, min_fall=min_fall, min_rise=min_rise)
    return trial.measure(class_index, class_name)

