"""The pipeline's interventions: a run's model and test examples behind ``intervene(class, attribute, value)``.

:func:`~sparsecheck.analysis.spurious.find_spurious_features` asks, for each suspicion that passes
its association and ablation tests, whether the model really relies on the value. The
:class:`Intervener` answers with an :class:`~sparsecheck.analysis.interventions.InterventionResult`:

* the cue is the config's ``data.interventions`` entry for the attribute when there is one (parsed
  by the run's modality), else it is **estimated from the test examples** by the modality
  (:meth:`~sparsecheck.modalities.base.Modality.estimate_cue`; images: a region, a colour or a
  texture, :func:`~sparsecheck.analysis.cues.estimate_cue`; texts: a carrier word to insert or
  delete, :func:`~sparsecheck.text.cues.estimate_text_cue`): how the examples with the value
  differ from the others of their class;
* one :class:`~sparsecheck.analysis.interventions.CueTrial` per (attribute, value), shared by
  every class asked about it, tested sequentially; the model's probabilities on the unchanged
  images are those of the feature extraction, so they cost no forward pass;
* a confirmed cue gets its picture (``cues/<attribute>=<value>.png`` in the output directory:
  :meth:`~sparsecheck.modalities.base.Modality.render_cue`), which the report shows with the finding.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import numpy as np

from sparsecheck._runtime import exception_reason
from sparsecheck.analysis.feature_modes import is_feature_mode
from sparsecheck.analysis.interventions import CueTrial, InterventionResult
from sparsecheck.analysis.stats import softmax
from sparsecheck.features.taps import FeatureExtractor
from sparsecheck.pipeline.context import RunContext

logger = logging.getLogger(__name__)

__all__ = ["Intervener", "CUE_DIR"]

#: where the pictures of confirmed cues go, in the output directory
CUE_DIR = "cues"


class _LazyImages:
    """The test split's examples, read batch by batch (``images[rows]``: images or texts)."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset
        self.shape = (len(dataset),)

    def __getitem__(self, rows: np.ndarray) -> np.ndarray:
        return self.dataset.batch(np.asarray(rows))


class Intervener:
    """``(class_label, attribute, value) -> InterventionResult or None`` over a run's model and test
    images (module docstring). As a context manager it is None when interventions are off or
    cannot run (no model, no images: precomputed features), with the reason under ``skipped``."""

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self.count = 0
        self.trials: dict[tuple[str, str], list[tuple[CueTrial, Any]] | None] = {}
        self._extractor: Any = None

    def __enter__(self) -> "Intervener | None":
        ctx = self.ctx
        if ctx.config.analysis.interventions and "test" in ctx.precomputed:
            source = ctx.precomputed["test"].source
            ctx.skip("interventions", f"data.test is precomputed features ({source}): there are no "
                                      f"{ctx.modality.noun}s to run the model on")
            return None
        if (not ctx.config.analysis.interventions or ctx.model is None or "test" not in ctx.datasets
                or ctx.input_spec is None):
            return None
        try:
            self._extractor = FeatureExtractor(ctx.model, ctx.config.model.feature_layer, device=ctx.device)
            self._extractor.open()
        except Exception as exc:
            ctx.skip("interventions", exception_reason(exc))
            return None
        view = ctx.splits["test"]
        self.images = _LazyImages(ctx.datasets["test"])
        self.labels = np.asarray(view.labels)
        self.metadata = view.metadata.reset_index(drop=True)
        self.base_probs = softmax(np.asarray(view.logits, np.float64)[:, :len(ctx.class_names)])
        self.specs = dict(ctx.config.data.interventions)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._extractor is not None:
            self._extractor.close()

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            x = self.ctx.input_spec.transform(images, device=self.ctx.device)
            logits, _ = self._extractor(x)
        return softmax(logits.float().cpu().numpy().astype(np.float64)[:, :len(self.ctx.class_names)])

    # ------------------------------------------------------------------ the trial of one value
    def _trials(self, attribute: str, value: str) -> list[tuple[CueTrial, Any]] | None:
        """The trials of a value: its declared cue, or its estimated cue and alternates (each with its estimate)."""
        ctx = self.ctx
        acfg = ctx.config.analysis
        has = (self.metadata[attribute].astype(str) == str(value)).to_numpy()
        spec = self.specs.get(attribute)
        if spec is not None:
            if str(spec.get("value")) != str(value):
                return None
            put, remove = ctx.modality.parse_intervention({k: v for k, v in spec.items() if k != "value"},
                                                          key=f"data.interventions.{attribute}")
            cues = [(put, remove, None)]
        else:
            estimate = ctx.modality.estimate_cue(self.images, has, self.labels, seed=int(ctx.config.seed))
            if estimate is None:
                logger.info("interventions: no cue could be learned for %s=%s from the %ss", attribute, value,
                            ctx.modality.noun)
                return None
            # the images of a feature's "on" mode are defined by the model: taking their difference
            # off may take off the class's own object, so only putting it on other classes' images,
            # which keep theirs, counts (feature_modes' module docstring)
            own_feature = is_feature_mode(attribute)
            cues = [(e.put, None if own_feature else e.remove, e) for e in (estimate, *estimate.alternates)]
        # each cue tried is a test: the level is shared among them (Bonferroni)
        alpha = 0.05 / len(cues)
        return [(CueTrial(self.predict_proba, self.images, self.labels, put, remove, has_cue=has,
                          base_probs=self.base_probs, sample=acfg.intervention_samples,
                          batch_size=max(1, int(ctx.config.features.batch_size)), seed=int(ctx.config.seed),
                          alpha=alpha, noun=ctx.modality.noun), est) for put, remove, est in cues]

    def __call__(self, class_label: Any, attribute: str, value: str) -> InterventionResult | None:
        """Test the value's cue for the class (its alternates too, until one is confirmed)."""
        key = (str(attribute), str(value))
        c = int(class_label)
        name = self.ctx.class_names[c]
        try:
            if key not in self.trials:
                self.trials[key] = self._trials(*key)
            trials = self.trials[key]
            if not trials:
                return None
            self.count += 1
            results = []
            for trial, est in trials:
                results.append((trial.measure(c, name), trial, est))
                if results[-1][0].confirmed:
                    break
        except Exception as exc:  # one cue that cannot be measured costs its evidence, not the run
            self.trials[key] = None
            self.ctx.skip(f"intervention for class {name} on {attribute}={value}", exception_reason(exc))
            return None
        result, trial, est = next((r for r in results if r[0].confirmed), results[0])
        if est is not None:
            result.cue_estimate = {**est.to_dict(), "tried": len(results)}
        if result.confirmed:
            picture = self._picture(trial, result, key, est)
            if picture is not None:
                result.cue_estimate = {**(result.cue_estimate or {}), "image": picture}
        return result

    def _picture(self, trial: CueTrial, result: InterventionResult, key: tuple[str, str], est: Any) -> str | None:
        """Draw the cue and one image before/after into the output directory; its relative path."""
        out = self.ctx.out_dir
        example = trial.example(result.class_index)
        if out is None or example is None:
            return None
        row, p_cue, p_ctrl = example
        names = self.ctx.class_names
        try:
            x = np.asarray(self.images[np.array([row])])
            lab = self.labels[[row]]
            cued = trial.put.apply_labelled(x, lab)[0]
            shown = [(x[0], f"as it is: {names[int(self.base_probs[row].argmax())]}"),
                     (cued, f"with the cue: {names[int(p_cue.argmax())]}")]
            control = trial.put.control
            if control is not None:
                shown.append((control.apply_labelled(x, lab)[0], f"control: {names[int(p_ctrl.argmax())]}"))
            slug = re.sub(r"[^A-Za-z0-9_.=-]+", "_", f"{key[0]}={key[1]}-{result.class_name}")[:120]
            rel = f"{CUE_DIR}/{slug}.png"
            self.ctx.modality.render_cue(Path(out) / rel, estimate=est, cue_name=trial.put.name,
                                         examples=shown, title=f"class {result.class_name} on {key[0]}={key[1]}")
        except Exception as exc:  # the picture is evidence to look at; the finding stands without it
            self.ctx.skip(f"picture of the cue {key[0]}={key[1]}", exception_reason(exc))
            return None
        self.ctx.artifacts[rel] = str(Path(out) / rel)
        return rel

    @property
    def estimated(self) -> int:
        """Values whose cue was learned from the images."""
        return sum(1 for t in self.trials.values() if t and t[0][1] is not None)
