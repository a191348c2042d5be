"""LIME for a deep feature: which superpixels make one feature of the sparse layer fire.

As in Wong, Santurkar & Madry (ICML 2021), LIME's local linear model is regressed on the
*standardised activation* of one deep feature, ``(a - mean_) / std_`` with the sparse layer's
statistics, not on a class probability: the explanation says what the feature looks at, whatever
classes use it.

Three pieces, each usable on its own:

* :class:`FeatureActivation` — the regression target: uint8 images in, standardised feature
  activations out, the model run in as few batched forward calls as memory allows (GPU when the
  device says so), forward time measured (:mod:`sparsecheck.analysis.activation`, re-exported here).
* :class:`Segmenter` — superpixels that work for small images too (SLIC by default; quickshift
  with a small kernel on request), seeded.
* :class:`LimeFeatureExplainer` — ``lime.lime_image.LimeImageExplainer`` driven with the two
  above; :meth:`~LimeFeatureExplainer.explain` returns a :class:`FeatureExplanation`,
  :meth:`~LimeFeatureExplainer.attribute` a per-pixel map. Any object with an
  ``attribute(image, target)`` method can stand in for it (the sanity check takes one).

Examples
--------
>>> import numpy as np, torch, torch.nn as nn
>>> net = nn.Sequential(nn.Flatten(), nn.Linear(8 * 8 * 3, 4), nn.ReLU(), nn.Linear(4, 2)).eval()
>>> images = np.random.default_rng(0).integers(0, 255, size=(3, 8, 8, 3), dtype=np.uint8)
>>> explainer = LimeFeatureExplainer(num_samples=50, segmenter=Segmenter(n_segments=4))
>>> with FeatureActivation(net, feature=1) as target:
...     exp = explainer.explain(images[0], target, feature=1)
>>> exp.segments.shape, exp.weights.shape == (exp.n_segments,), target.forward_calls
((8, 8), True, 1)
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from sparsecheck.analysis.activation import FeatureActivation, FeatureColumn
from sparsecheck.errors import DataError, ParameterError

logger = logging.getLogger(__name__)

__all__ = [
    "FeatureActivation",
    "FeatureColumn",
    "Segmenter",
    "FeatureExplanation",
    "LimeFeatureExplainer",
    "Attributor",
    "overlay",
    "positive_share_inside",
]


# --------------------------------------------------------------------------- superpixels
@dataclass(frozen=True)
class Segmenter:
    """Superpixels for LIME, also for small (32×32) images.

    Parameters
    ----------
    method : {"slic", "quickshift"}
        SLIC (``skimage.segmentation.slic``, fast and even-sized; the default) or quickshift
        (LIME's own choice, here with a small kernel so 32×32 images get more than one segment).
    n_segments : int
        SLIC's target number of superpixels.
    compactness : float
        SLIC's colour/space trade-off (Lab colour space).
    kernel_size, max_dist, ratio : float
        Quickshift's parameters.
    random_state : int
        Seed (quickshift's; SLIC is deterministic).

    Returns from a call: ``int`` labels ``0..K-1`` of shape ``(H, W)``, every label used.

    Examples
    --------
    >>> img = np.zeros((32, 32, 3), np.uint8); img[:16] = 200
    >>> seg = Segmenter(n_segments=8)(img)
    >>> seg.shape, int(seg.min()), len(np.unique(seg)) == int(seg.max()) + 1
    ((32, 32), 0, True)
    """

    method: str = "slic"
    n_segments: int = 50
    compactness: float = 10.0
    kernel_size: float = 1.0
    max_dist: float = 6.0
    ratio: float = 0.5
    random_state: int = 0

    def __post_init__(self) -> None:
        if self.method not in ("slic", "quickshift"):
            raise ParameterError(f"The 'method' parameter of Segmenter must be 'slic' or 'quickshift'. "
                                 f"Got {self.method!r} instead.", parameter="method")
        if int(self.n_segments) < 1:
            raise ParameterError(f"The 'n_segments' parameter of Segmenter must be a positive int. "
                                 f"Got {self.n_segments!r} instead.", parameter="n_segments")

    def __call__(self, image: np.ndarray) -> np.ndarray:
        from skimage.segmentation import quickshift, slic

        image = _as_rgb(image)
        if self.method == "slic":
            labels = slic(image, n_segments=int(self.n_segments), compactness=float(self.compactness),
                          start_label=0, channel_axis=-1)
        else:
            labels = quickshift(image, kernel_size=self.kernel_size, max_dist=self.max_dist,
                                ratio=self.ratio, rng=self.random_state)
        _, dense = np.unique(labels, return_inverse=True)  # LIME indexes superpixels by label
        return dense.reshape(labels.shape).astype(np.int64)


def _as_rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[-1] not in (1, 3):
        raise DataError(f"expected an H×W, H×W×1 or H×W×3 image, got shape {image.shape}")
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    return image


# --------------------------------------------------------------------------- explanations
@dataclass
class FeatureExplanation:
    """LIME's local linear model of one feature's standardised activation on one image.

    Attributes
    ----------
    feature : int
    image : ndarray (H, W, 3) uint8 — the explained image (RGB)
    example : ndarray (H, W, C) uint8 — the same as it was given (C = 1 for a grey dataset)
    segments : ndarray (H, W) int — superpixel labels 0..K-1
    weights : ndarray (K,) — LIME coefficient of each superpixel (activation gained by showing it)
    intercept, score : float — the local model's intercept and weighted R²
    activation : float — standardised activation on the unperturbed image
    example_id : str, optional
    seconds, forward_seconds : float — wall time of the explanation, and of its forward calls
    """

    feature: int
    image: np.ndarray
    segments: np.ndarray
    weights: np.ndarray
    intercept: float
    score: float
    activation: float
    example_id: str | None = None
    num_samples: int = 0
    seconds: float = 0.0
    forward_seconds: float = 0.0
    #: the explained example as it was given (H×W×C, as the dataset stores it; ``image`` is its RGB)
    example: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.example is None:
            self.example = self.image

    @property
    def n_segments(self) -> int:
        return int(self.weights.size)

    def attribution_map(self) -> np.ndarray:
        """Per-pixel attribution: each pixel carries its superpixel's weight, shape (H, W)."""
        return self.weights[self.segments]

    def to_dict(self) -> dict[str, Any]:
        """Summary without arrays (JSON-ready)."""
        pos = self.weights[self.weights > 0]
        return {"feature": int(self.feature), "example_id": self.example_id,
                "activation": float(self.activation), "score": float(self.score),
                "intercept": float(self.intercept), "n_segments": self.n_segments,
                "positive_weight": float(pos.sum()), "num_samples": int(self.num_samples),
                "seconds": round(float(self.seconds), 4)}


class Attributor(Protocol):
    """Anything that explains a target on an image: ``attribute(image, target) -> (H, W) map``.

    ``target`` maps a batch of uint8 images ``(n, H, W, C)`` to ``(n, 1)`` values.
    """

    def attribute(self, image: np.ndarray, target: Callable[[np.ndarray], np.ndarray]) -> np.ndarray: ...


def _lime_explainer_class() -> type:
    from lime import lime_image

    class _BatchedLimeImageExplainer(lime_image.LimeImageExplainer):
        """LimeImageExplainer with a vectorised, silent ``data_labels``.

        Draws exactly what lime draws (the same ``random_state`` calls, the first sample left
        unperturbed) but builds each batch of perturbed images with one ``np.where`` instead of a
        Python loop per sample and per superpixel, and shows no tqdm bar of its own.
        """

        last_labels_: np.ndarray | None = None
        #: stop drawing samples once the weights of the ``columns_`` agree this well (Pearson) between
        #: two checkpoints of doubling size (None: draw every sample)
        convergence_: float | None = None
        columns_: tuple[int, ...] = (0,)

        def data_labels(self, image, fudged_image, segments, classifier_fn, num_samples, batch_size=10):
            n_features = np.unique(segments).shape[0]
            data = self.random_state.randint(0, 2, num_samples * n_features).reshape((num_samples, n_features))
            data[0, :] = 1
            out = []
            step = max(1, int(batch_size))
            done, previous = 0, None
            for stop in _checkpoints(num_samples, n_features, self.convergence_ is not None):
                for lo in range(done, stop, step):
                    keep = data[lo:min(lo + step, stop)][:, segments].astype(bool)[..., None]
                    out.append(np.asarray(classifier_fn(np.where(keep, image[None], fudged_image[None]))))
                done = stop
                if stop == num_samples:
                    break
                weights = self._weights(data[:stop], np.concatenate(out, axis=0), n_features)
                if previous is not None and _agree(previous, weights) >= self.convergence_:
                    break
                previous = weights
            labels = np.concatenate(out, axis=0)
            self.last_labels_ = labels
            return data[:done], labels

        def _weights(self, data: np.ndarray, labels: np.ndarray, n_features: int) -> np.ndarray:
            """LIME's weights of every column of interest on the samples so far, as it fits them."""
            import sklearn.metrics

            distances = sklearn.metrics.pairwise_distances(data, data[0].reshape(1, -1), metric="cosine").ravel()
            rows = []
            for col in self.columns_:
                _, exp, _, _ = self.base.explain_instance_with_data(data, labels, distances, col, n_features,
                                                                    feature_selection=self.feature_selection)
                w = np.zeros(n_features)
                for seg, v in exp:
                    w[int(seg)] = v
                rows.append(w)
            return np.stack(rows)

    return _BatchedLimeImageExplainer


#: the first checkpoint of an adaptive LIME run: samples per superpixel (and at least this many)
_FIRST_PER_SEGMENT, _FIRST_MIN = 4, 128


def _checkpoints(num_samples: int, n_features: int, adaptive: bool) -> list[int]:
    """Sample counts at which an adaptive run compares its weights: doubling from a few samples per
    superpixel up to ``num_samples`` (only ``num_samples`` when not adaptive)."""
    if not adaptive:
        return [num_samples]
    marks, m = [], max(_FIRST_MIN, _FIRST_PER_SEGMENT * n_features)
    while m < num_samples:
        marks.append(m)
        m *= 2
    return [*marks, num_samples]


def _agree(a: np.ndarray, b: np.ndarray) -> float:
    """The least Pearson correlation between matching rows of two weight matrices (1 for two rows
    that are both flat: nothing to explain either way)."""
    worst = 1.0
    for x, y in zip(a, b):
        if np.ptp(x) == 0 and np.ptp(y) == 0:
            continue
        if np.ptp(x) == 0 or np.ptp(y) == 0:
            return 0.0
        worst = min(worst, float(np.corrcoef(x, y)[0, 1]))
    return worst


@dataclass
class LimeFeatureExplainer:
    """LIME superpixel explanations of a feature's activation (``lime.lime_image``).

    Parameters
    ----------
    num_samples : int
        Perturbed images per explanation (LIME's ``num_samples``).
    segmenter : Segmenter or callable, optional
        ``image -> (H, W) labels 0..K-1``; default :class:`Segmenter` (SLIC, 50 superpixels).
    hide_color : {"median", "mean", "lime"} or float or sequence of float
        What a hidden superpixel shows: the image's per-channel median (the background of most
        images; the default), its mean, ``"lime"`` for LIME's own choice (each superpixel's mean
        colour — which leaves a uniformly coloured patch such as a marker unchanged), or a fixed
        uint8 colour.
    kernel_width : float
        Width of LIME's exponential kernel over cosine distances.
    random_state : int
        Seeds LIME's perturbations; every explanation of the same image draws the same samples,
        so two models can be compared sample for sample.
    convergence : float or None
        Adaptive sample size: draw the samples in doubling rounds (from 4 per superpixel, at
        least 128) and stop as soon as LIME's weights at the end of a round correlate at least
        this well (Pearson, every explained column) with those at the end of the round before;
        ``num_samples`` is the most it draws. The first samples are the ones a full run draws, so
        a stopped explanation is the full run's, cut short once more samples stopped changing it.
        None: always ``num_samples``.
    batch_size : int, optional
        Perturbed images drawn and handed to the target per call. Default: what the target says
        one forward call on its device takes (``target.batch_size_for(image)``, as
        :class:`FeatureActivation` does from the free GPU memory or a CPU input budget), else all
        ``num_samples`` at once. ``last_batch_size_`` records the size used.

    Examples
    --------
    >>> explainer = LimeFeatureExplainer(num_samples=200, random_state=1)
    >>> explainer.num_samples, explainer.segmenter.method
    (200, 'slic')
    """

    num_samples: int = 1000
    convergence: float | None = None
    segmenter: Callable[[np.ndarray], np.ndarray] | None = None
    hide_color: Any = "median"
    kernel_width: float = 0.25
    random_state: int = 0
    batch_size: int | None = None
    _cls: Any = field(default=None, init=False, repr=False)
    last_batch_size_: int | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if int(self.num_samples) < 2:
            raise ParameterError(f"The 'num_samples' parameter of LimeFeatureExplainer must be an int >= 2. "
                                 f"Got {self.num_samples!r} instead.", parameter="num_samples")
        if self.convergence is not None and not 0.0 < float(self.convergence) <= 1.0:
            raise ParameterError(f"The 'convergence' parameter of LimeFeatureExplainer must be a float in (0, 1] "
                                 f"or None. Got {self.convergence!r} instead.", parameter="convergence")
        if self.segmenter is None:
            self.segmenter = Segmenter(random_state=self.random_state)
        if isinstance(self.hide_color, str) and self.hide_color not in ("median", "mean", "lime"):
            raise ParameterError(f"The 'hide_color' parameter of LimeFeatureExplainer must be 'median', 'mean', "
                                 f"'lime' or a colour. Got {self.hide_color!r} instead.", parameter="hide_color")

    def explain(self, image: np.ndarray, target: Callable[[np.ndarray], np.ndarray], *, feature: int = 0,
                example_id: str | None = None) -> FeatureExplanation:
        """Explain ``target`` (a :class:`FeatureActivation` of one feature) on one image.

        Parameters
        ----------
        image : ndarray (H, W), (H, W, 1) or (H, W, 3) uint8
        target : callable
            Batch of uint8 RGB images → ``(n, 1)`` (or ``(n, m)``: column 0 is explained).
        feature : int
            Recorded in the explanation.
        example_id : str, optional
            Recorded in the explanation.
        """
        return self.explain_many(image, target, columns=[0], features=[feature], example_id=example_id)[0]

    def explain_many(self, image: np.ndarray, target: Callable[[np.ndarray], np.ndarray], *,
                     columns: Sequence[int], features: Sequence[int],
                     example_id: str | None = None) -> list[FeatureExplanation]:
        """Explain several of ``target``'s columns on one image from one set of perturbed images.

        LIME fits one local linear model per column on the same samples, so explaining ``m``
        features of an image costs the forward passes of one: ``target`` (a
        :class:`FeatureActivation` of many features) returns every feature's activation per pass.
        ``columns[j]`` is the column of ``features[j]``. Each explanation is the one
        :meth:`explain` gives for that column alone (the same samples, the same regression).

        Examples
        --------
        >>> import torch.nn as nn
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(8 * 8 * 3, 4), nn.ReLU(), nn.Linear(4, 2)).eval()
        >>> img = np.random.default_rng(0).integers(0, 255, size=(8, 8, 3), dtype=np.uint8)
        >>> lime = LimeFeatureExplainer(num_samples=40, segmenter=Segmenter(n_segments=4))
        >>> with FeatureActivation(net, [0, 1, 2]) as target:
        ...     exps = lime.explain_many(img, target, columns=[0, 2], features=[0, 2])
        ...     one = lime.explain(img, target.column(2), feature=2)
        ...     calls = target.forward_calls
        >>> [e.feature for e in exps], bool(np.allclose(exps[1].weights, one.weights)), calls
        ([0, 2], True, 2)
        """
        if self._cls is None:
            self._cls = _lime_explainer_class()
        columns, features = [int(c) for c in columns], [int(f) for f in features]
        if len(columns) != len(features) or not columns:
            raise ParameterError("explain_many needs one column per feature, at least one", parameter="columns")
        rgb = _as_rgb(image)
        target = _in_channels_of(image, target)
        start = time.perf_counter()
        fwd0 = getattr(target, "forward_seconds", 0.0)
        segments = np.asarray(self.segmenter(rgb))  # type: ignore[misc]
        if segments.shape != rgb.shape[:2]:
            raise DataError(f"segmenter returned shape {segments.shape} for an image of shape {rgb.shape[:2]}")
        k = int(segments.max()) + 1
        lime = self._cls(kernel_width=self.kernel_width, feature_selection="none", random_state=self.random_state)
        lime.convergence_, lime.columns_ = self.convergence, tuple(columns)
        n = int(self.num_samples)
        step = self.batch_size
        if step is None and hasattr(target, "batch_size_for"):
            step = target.batch_size_for(rgb)
        step = max(1, min(n, int(step or n)))
        self.last_batch_size_ = step
        result = lime.explain_instance(
            rgb, _two_columns(target), labels=tuple(columns), hide_color=self._hide(rgb), top_labels=None,
            num_features=k, num_samples=n, batch_size=step,
            segmentation_fn=lambda _img: segments, random_seed=self.random_state)
        seconds = (time.perf_counter() - start) / len(columns)
        forward = (getattr(target, "forward_seconds", 0.0) - fwd0) / len(columns)
        out = []
        for col, feat in zip(columns, features):
            weights = np.zeros(k, dtype=np.float64)
            for seg, w in result.local_exp[col]:
                weights[int(seg)] = float(w)
            activation = float(lime.last_labels_[0, col]) if lime.last_labels_ is not None else float("nan")
            out.append(FeatureExplanation(
                feature=feat, image=rgb, segments=segments, weights=weights,
                intercept=float(np.ravel(result.intercept[col])[0]), score=float(result.score[col])
                if isinstance(result.score, dict) else float(result.score), activation=activation,
                example_id=example_id, num_samples=len(lime.last_labels_), seconds=seconds,
                forward_seconds=forward, example=np.asarray(image)))
        return out

    def attribute(self, image: np.ndarray, target: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """Per-pixel attribution map (H, W): the weight of each pixel's superpixel."""
        return self.explain(image, target).attribution_map()

    def _hide(self, rgb: np.ndarray) -> Any:
        if isinstance(self.hide_color, str):
            if self.hide_color == "lime":
                return None
            stat = np.median if self.hide_color == "median" else np.mean
            return stat(rgb.reshape(-1, 3), axis=0).round().astype(np.uint8)
        return self.hide_color


class _GreyTarget:
    """A target over grey images, fed LIME's RGB perturbations: each is turned back into the
    dataset's one channel (the first; LIME's RGB of a grey image repeats it) before the model."""

    def __init__(self, target: Callable[[np.ndarray], np.ndarray]) -> None:
        self.target = target

    @property
    def forward_seconds(self) -> float:
        return float(getattr(self.target, "forward_seconds", 0.0))

    def batch_size_for(self, image: np.ndarray) -> int:
        return self.target.batch_size_for(image)  # type: ignore[attr-defined]

    def __call__(self, images: np.ndarray) -> np.ndarray:
        images = np.asarray(images)
        return self.target(images[..., :1] if images.shape[-1] == 3 else images)


def _in_channels_of(image: np.ndarray, target: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    """``target`` as LIME must call it for ``image``: wrapped for a one-channel image, else as it is."""
    image = np.asarray(image)
    grey = image.ndim == 2 or (image.ndim == 3 and image.shape[-1] == 1)
    if not grey or isinstance(target, _GreyTarget):
        return target
    if not hasattr(target, "batch_size_for"):
        return lambda x: target(np.asarray(x)[..., :1])
    return _GreyTarget(target)


def _two_columns(target: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    """LIME reads labels[:, label]; accept targets that return (n,) as well."""

    def fn(images: np.ndarray) -> np.ndarray:
        values = np.asarray(target(images), dtype=np.float64)
        return values[:, None] if values.ndim == 1 else values

    return fn


# --------------------------------------------------------------------------- helpers for pictures and checks
def overlay(explanation: FeatureExplanation, *, alpha: float = 0.6, boundaries: bool = True,
            scale: int = 1) -> np.ndarray:
    """The explained image with positive superpixels tinted green and negative ones red.

    Tint strength follows ``|weight| / max |weight|``; superpixel boundaries are drawn with
    ``skimage.segmentation.mark_boundaries`` after enlarging the image ``scale`` times (nearest
    neighbour), so they stay thin on small images. Returns float RGB in [0, 1],
    shape (H·scale, W·scale, 3).
    """
    from skimage.segmentation import mark_boundaries

    f = max(1, int(scale))
    img = explanation.image.astype(np.float64).repeat(f, axis=0).repeat(f, axis=1) / 255.0
    seg = explanation.segments.repeat(f, axis=0).repeat(f, axis=1)
    w = explanation.weights
    top = float(np.abs(w).max()) or 1.0
    strength = (np.abs(w) / top)[seg][..., None] * alpha
    colour = np.where((w > 0)[seg][..., None], [0.0, 0.85, 0.0], [0.9, 0.0, 0.0])
    tinted = np.where(w[seg][..., None] != 0, (1 - strength) * img + strength * colour, img)
    if boundaries:
        tinted = mark_boundaries(tinted, seg, color=(1.0, 1.0, 0.0), mode="inner")
    return np.clip(tinted, 0.0, 1.0)


def positive_share_inside(explanation: FeatureExplanation, region: np.ndarray) -> float:
    """Share of the positive superpixel weight that lies inside ``region``.

    ``sum_s w_s+ * (fraction of superpixel s inside region) / sum_s w_s+``; NaN when no
    superpixel has a positive weight.

    Parameters
    ----------
    region : ndarray (H, W) bool
    """
    region = np.asarray(region, dtype=bool)
    if region.shape != explanation.segments.shape:
        raise DataError(f"region has shape {region.shape}, the image {explanation.segments.shape}")
    k = explanation.n_segments
    size = np.bincount(explanation.segments.ravel(), minlength=k)
    inside = np.bincount(explanation.segments.ravel(), weights=region.ravel().astype(np.float64), minlength=k)
    pos = np.clip(explanation.weights, 0.0, None)
    total = pos.sum()
    if total <= 0:
        return float("nan")
    return float((pos * inside / np.maximum(size, 1)).sum() / total)
