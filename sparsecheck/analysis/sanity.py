"""Sanity check of feature explanations: the model-randomisation test (Adebayo et al., NeurIPS 2018).

An explanation of what a feature looks at must depend on the model that computes the feature. The
test re-initialises the model's parameters layer by layer, from the output side down (a
*cascade*), recomputes the explanation after each step, and measures the Spearman rank
correlation between the original and the randomised per-pixel maps. An explainer that ignores
the model (an edge detector, say) keeps a correlation near 1 and is flagged *not trustworthy*;
LIME on a trained model drops towards 0.

The randomised models are deep copies: the caller's model is never touched. Parameters are
redrawn from a seeded normal distribution with each tensor's own mean and standard deviation
("scaled like the original"); buffers (batch-norm statistics) are kept, as in the paper. Layers
whose randomisation leaves the feature's activations on the examples bit-identical (those after
it, such as the classifier head) are recorded but not re-explained.

Examples
--------
>>> import numpy as np, torch.nn as nn
>>> net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 5),
...                     nn.ReLU(), nn.Linear(5, 2)).eval()
>>> [name for name, _ in randomised_models(net)]
['5', '3', '0']
>>> images = np.random.default_rng(0).integers(0, 255, size=(1, 8, 8, 3), dtype=np.uint8)
>>> result = model_randomisation_test(net, 3, images, explainer=EdgeAttributor())
>>> round(result.spearman, 3), result.trustworthy
(1.0, False)
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn as nn
from scipy import stats as _st

from sparsecheck.analysis.activation import FeatureActivation
from sparsecheck.analysis.lime_features import Attributor, LimeFeatureExplainer
from sparsecheck.errors import ModelError, ParameterError
from sparsecheck.models import Model

logger = logging.getLogger(__name__)

__all__ = ["SanityStep", "SanityResult", "randomised_models", "map_correlation", "model_randomisation_test",
           "EdgeAttributor", "DEFAULT_THRESHOLD"]

#: explanations whose correlation with the fully randomised model's stays at or above this are
#: not trustworthy
DEFAULT_THRESHOLD = 0.5


@dataclass
class SanityStep:
    """One step of the cascade: ``layer`` (and every layer above it) re-initialised."""

    layer: str
    spearman: float
    changes_feature: bool

    def to_dict(self) -> dict[str, Any]:
        return {"layer": self.layer, "spearman": _num(self.spearman), "changes_feature": self.changes_feature}


@dataclass
class SanityResult:
    """Outcome of the model-randomisation test for one feature.

    Attributes
    ----------
    feature : int
    spearman : float
        Mean (over the examples) Spearman correlation between the original maps and the maps of
        the fully randomised model (the end of the cascade).
    trustworthy : bool
        ``spearman < threshold``.
    threshold : float
    per_example : list of float
        The end-of-cascade correlation of each example.
    cascade : list of SanityStep
        Correlation after each step, top layer first.
    example_ids : list of str
    """

    feature: int
    spearman: float
    trustworthy: bool
    threshold: float
    per_example: list[float] = field(default_factory=list)
    cascade: list[SanityStep] = field(default_factory=list)
    example_ids: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"feature": int(self.feature), "spearman": _num(self.spearman), "trustworthy": self.trustworthy,
                "threshold": float(self.threshold), "per_example": [_num(v) for v in self.per_example],
                "example_ids": list(self.example_ids), "cascade": [s.to_dict() for s in self.cascade]}

    def card(self) -> dict[str, Any]:
        """The ``sanity`` entry of a feature card: ``{"spearman", "trustworthy", "cascade"}``.

        ``cascade`` lists ``[layer, spearman]`` after each re-initialised layer that changed the
        feature (empty when only the fully randomised model was explained).
        """
        steps = [[s.layer, _num(s.spearman)] for s in self.cascade if s.changes_feature and s.layer != "all"]
        return {"spearman": _num(self.spearman), "trustworthy": self.trustworthy, "cascade": steps}


def _num(v: float) -> float | None:
    return float(v) if np.isfinite(v) else None


# --------------------------------------------------------------------------- randomised copies
def _layer_groups(names: Sequence[str]) -> list[tuple[str, list[str]]]:
    """Parameter names grouped by owning module, in order of first appearance."""
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(name.rpartition(".")[0] or name, []).append(name)
    return list(groups.items())


def _reinit_(tensor: torch.Tensor, generator: torch.Generator) -> None:
    with torch.no_grad():
        t = tensor.detach()
        flat = t.float().reshape(-1)
        mean = float(flat.mean()) if flat.numel() else 0.0
        std = float(flat.std()) if flat.numel() > 1 else 0.0
        if not np.isfinite(std) or std == 0.0:
            std = abs(mean) * 0.1
        noise = torch.randn(t.shape, generator=generator, dtype=torch.float32)
        t.copy_((mean + std * noise).to(dtype=t.dtype, device=t.device))


def randomised_models(model: Any, *, random_state: int = 0, cascade: bool = True) -> Iterator[tuple[str, Any]]:
    """Deep copies of ``model`` with more and more layers re-initialised, top layer first.

    Parameters
    ----------
    model : Model or nn.Module
        A :class:`~sparsecheck.data.Model` (an exported program's parameters are redrawn in a copy
        of the program) or a plain module.
    random_state : int
        Seeds the redrawn weights.
    cascade : bool
        True: one copy per layer (cumulative, from the output side down). False: only the fully
        randomised copy, named ``"all"``.

    Yields
    ------
    (layer, model) : the module path re-initialised at this step, and a model of the same kind.
        Each yielded copy is final until the next one is requested.
    """
    generator = torch.Generator().manual_seed(int(random_state))
    program = getattr(model, "program", None)
    if program is not None:
        prog = copy.deepcopy(program)
        state = prog.state_dict
        names = [n for n in prog.graph_signature.parameters if n in state]
        groups = _layer_groups(names)

        def build() -> Any:
            return Model(prog.module(), model.kind, f"{model.source} (randomised)", prog)
    else:
        module = getattr(model, "module", model)
        if not isinstance(module, nn.Module):
            raise ModelError(f"cannot randomise a {type(module).__name__}: need an nn.Module or an exported program")
        clone = copy.deepcopy(module)  # TorchScript modules copy too, with their own weights
        state = dict(clone.named_parameters())
        groups = _layer_groups(list(state))

        def build() -> Any:
            return clone if not isinstance(model, Model) else Model(clone, model.kind, f"{model.source} (randomised)")
    if not groups:
        raise ModelError("the model has no parameters to randomise")
    for i, (layer, params) in enumerate(reversed(groups)):
        for name in params:
            _reinit_(state[name], generator)
        if cascade or i == len(groups) - 1:
            yield (layer if cascade else "all"), build()


# --------------------------------------------------------------------------- the test
def map_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two attribution maps (flattened).

    A constant map carries no ranking; against it the correlation is taken as 0 (the explanation
    changed completely), and two constant maps count as identical (1).

    Examples
    --------
    >>> map_correlation(np.arange(9.0).reshape(3, 3), np.arange(9.0).reshape(3, 3) ** 2)
    1.0
    """
    a, b = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
    if a.shape != b.shape:
        raise ParameterError(f"maps differ in size: {a.size} vs {b.size}", parameter="maps")
    flat_a, flat_b = np.ptp(a) == 0, np.ptp(b) == 0
    if flat_a or flat_b:
        return 1.0 if flat_a and flat_b else 0.0
    return float(_st.spearmanr(a, b).statistic)


class EdgeAttributor:
    """An "explainer" that ignores the model: the Sobel edge magnitude of the image.

    The canonical failure case of the sanity check (Adebayo et al.'s edge detector): its maps do
    not change when the model is randomised.
    """

    def attribute(self, image: np.ndarray, target: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        from skimage.filters import sobel

        img = np.asarray(image, dtype=np.float64)
        grey = img.mean(axis=-1) if img.ndim == 3 else img
        return sobel(grey / 255.0)


def model_randomisation_test(
    model: Any,
    feature: int,
    images: Any,
    *,
    probes: Any = None,
    layer: str | None = None,
    input_spec: Any = None,
    mean: Any = 0.0,
    std: Any = 1.0,
    explainer: Attributor | None = None,
    original_maps: Sequence[np.ndarray] | None = None,
    cascade: bool = True,
    threshold: float = DEFAULT_THRESHOLD,
    random_state: int = 0,
    device: str = "cpu",
    channels: int | None = None,
    example_ids: Sequence[str] | None = None,
    on_explained: Callable[[], None] | None = None,
) -> SanityResult:
    """Run the model-randomisation test for one feature on a few images.

    Parameters
    ----------
    model : Model or nn.Module
    feature : int
        Feature index at ``layer``.
    images : raw batch
        Examples to explain (typically the feature's top-activating ones): for images a uint8
        ``(n, H, W, C)`` batch; any modality's raw batch.
    probes : raw batch, optional
        Varied examples on which a randomised layer's effect on the feature is measured
        (:meth:`~sparsecheck.modalities.base.Modality.sanity_probes`; images: the images, their
        negatives and mirrors). Default: ``images``.
    layer, input_spec, mean, std, device, channels
        As for :class:`~sparsecheck.analysis.lime_features.FeatureActivation`.
    explainer : Attributor, optional
        Anything with ``attribute(image, target) -> (H, W) map``; default a seeded
        :class:`~sparsecheck.analysis.lime_features.LimeFeatureExplainer` (the same perturbations
        for every model, so maps differ only because the model does).
    original_maps : sequence of (H, W) arrays, optional
        Maps of the trained model already computed with the same explainer (saves one round).
    cascade : bool
        Re-explain after every layer (True) or only after randomising all of them.
    threshold : float
        Correlation at or above which the explanation is *not trustworthy*.
    random_state : int
        Seeds the randomised weights.
    on_explained : callable, optional
        Called after each explanation (to advance a progress bar).

    Returns
    -------
    SanityResult
    """
    if len(images) == 0:
        raise ParameterError("The 'images' parameter of model_randomisation_test must be a non-empty batch of "
                             "examples. Got an empty one instead.", parameter="images")
    if not 0.0 < float(threshold) <= 1.0:
        raise ParameterError(f"The 'threshold' parameter of model_randomisation_test must be a float in "
                             f"(0, 1]. Got {threshold!r} instead.", parameter="threshold")
    explainer = explainer or LimeFeatureExplainer(random_state=random_state)
    tick = on_explained or (lambda: None)
    # varied inputs to tell "this layer does not feed the feature" from "the feature is constant"
    probes = images if probes is None else probes

    def explain_all(m: Any) -> tuple[list[np.ndarray], np.ndarray]:
        with FeatureActivation(m, feature, layer=layer, input_spec=input_spec, mean=mean, std=std,
                               device=device, channels=channels) as target:
            probe = target(probes)[:, 0]
            maps = []
            for img in images:
                maps.append(np.asarray(explainer.attribute(img, target), dtype=np.float64))
                tick()
        return maps, probe

    if original_maps is not None:
        if len(original_maps) != len(images):
            raise ParameterError(f"original_maps has {len(original_maps)} maps for {len(images)} images",
                                 parameter="original_maps")
        reference = [np.asarray(m, dtype=np.float64) for m in original_maps]
        with FeatureActivation(model, feature, layer=layer, input_spec=input_spec, mean=mean, std=std,
                               device=device, channels=channels) as target:
            probe = target(probes)[:, 0]
    else:
        reference, probe = explain_all(model)

    steps: list[SanityStep] = []
    current, current_probe = reference, probe
    per_example = [1.0] * len(images)
    for name, randomised in randomised_models(model, random_state=random_state, cascade=cascade):
        with FeatureActivation(randomised, feature, layer=layer, input_spec=input_spec, mean=mean, std=std,
                               device=device, channels=channels) as target:
            new_probe = target(probes)[:, 0]
        # a layer above the feature leaves its activations bit-identical; a feature constant on
        # the probes proves nothing, so it is re-explained anyway
        changed = not np.array_equal(new_probe, current_probe) or bool(np.ptp(new_probe) == 0)
        if changed:
            current, current_probe = explain_all(randomised)[0], new_probe
        per_example = [map_correlation(r, c) for r, c in zip(reference, current)]
        steps.append(SanityStep(name, float(np.mean(per_example)), changed))
        logger.debug("sanity feature %d: %s randomised → spearman %.3f%s", feature, name, steps[-1].spearman,
                     "" if changed else " (feature unchanged)")
    rho = float(np.mean(per_example))
    result = SanityResult(int(feature), rho, bool(rho < threshold), float(threshold), per_example, steps,
                          [str(i) for i in example_ids] if example_ids is not None else [])
    logger.info("sanity check of feature %d: spearman %.3f after randomising every layer → %s", feature, rho,
                "trustworthy" if result.trustworthy else "NOT trustworthy")
    return result
