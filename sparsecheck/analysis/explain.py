"""LIME on the features a reader needs, then the model-randomisation sanity check, within a time budget.

:func:`explain_cards` explains the cards' features in the order a run's results ask for
(:func:`sparsecheck.analysis.interpret.explanation_order`), on their top examples, sharing
examples between features (:func:`shared_rows`: an example explained for several features costs
the forward passes of one), then sanity-checks the explanations (Adebayo et al.) and draws the
card pictures. What an explanation is, how a check's probes are made and how a card is drawn
depend on the kind of input: they come from the run's modality
(:class:`~sparsecheck.modalities.base.Modality`: ``explainer``, ``sanity_probes``, ``render_card``).

Examples
--------
>>> shared_rows({1: [10, 11, 12, 13], 2: [12, 20, 10, 21]}, per_feature=2, pool=4)
{1: [10, 12], 2: [12, 10]}
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from sparsecheck._runtime import exception_reason, progress
from sparsecheck.analysis.cards import CARD_DIR, FeatureCard
from sparsecheck.analysis.activation import FeatureActivation
from sparsecheck.analysis.sanity import SanityResult, model_randomisation_test
from sparsecheck.defaults import ANALYSIS
from sparsecheck.modalities import Explanation, LocalExplainer, Modality, get_modality

if TYPE_CHECKING:  # pragma: no cover
    from sparsecheck.analysis.interpret import Interpretation

logger = logging.getLogger(__name__)

__all__ = ["explain_features", "explain_cards", "draw_cards", "shared_rows", "features_by_weight"]

_CARD_NAME = re.compile(r"^feature_\d+\.png$")


def features_by_weight(layer: Any, limit: int | None = None) -> list[int]:
    """Used features, largest total ``|weight|`` over classes first, at most ``limit`` of them."""
    W = np.abs(np.asarray(layer.weight_))
    total = W.sum(axis=0)
    used = np.flatnonzero(total > 0)
    order = used[np.argsort(-total[used], kind="stable")]
    return [int(j) for j in (order if limit is None else order[:int(limit)])]


def explain_features(model: Any, jobs: dict[int, Any], *, explainer: LocalExplainer,
                     example_ids: dict[int, Sequence[str]] | None = None, layer: str | None = None,
                     input_spec: Any = None, mean: Any = 0.0, std: Any = 1.0, device: str = "cpu",
                     channels: int | None = None, bar: Any = None,
                     on_error: Callable[[str, str], None] | None = None,
                     deadline: float | None = None) -> dict[int, list[Explanation]]:
    """Local explanations of several features on their examples, each example perturbed once for all
    the features that ask for it, under one progress bar.

    One :class:`FeatureActivation` serves every feature (one forward pass computes them all), and
    an image that several features are explained on (the same example id) gets one set of
    perturbed images, from which LIME fits one local model per feature
    (:meth:`~sparsecheck.analysis.lime_features.LimeFeatureExplainer.explain_many`): the forward
    passes of one explanation for all of them. Images are explained in the order of the first
    feature of ``jobs`` that asks for them; with a ``deadline`` no image starts after it.

    Parameters
    ----------
    model : Model or nn.Module
    jobs : dict feature → raw batch
        The examples to explain each feature on (typically its top-activating examples).
    explainer : LocalExplainer
        The modality's (:meth:`~sparsecheck.modalities.base.Modality.explainer`; images: LIME on
        superpixels).
    example_ids : dict feature → ids, optional
        The images' ids: the same id in two features' jobs is the same image. Without ids every
        image is its own.
    layer, input_spec, mean, std, device, channels
        As for FeatureActivation.
    bar : progress bar, optional
        Advanced once per explained image; by default one is opened for the whole job.
    on_error : callable ``(what, reason)``, optional
        Called instead of raising when one example cannot be explained; that example is left out.
    deadline : float, optional
        A :func:`time.perf_counter` value after which no explanation starts.

    Returns
    -------
    dict feature → list of Explanation, in the order of its jobs
    """
    features = list(jobs)
    out: dict[int, list[Explanation]] = {f: [] for f in features}
    if not features:
        return out
    # one entry per distinct image: its pixels, id, and the (feature, position) pairs that want it
    images: dict[Any, dict[str, Any]] = {}
    for f in features:
        ids = list(example_ids.get(f, [])) if example_ids else []
        for i, image in enumerate(jobs[f]):
            key = ids[i] if i < len(ids) else (f, i)
            entry = images.setdefault(key, {"image": image, "id": ids[i] if i < len(ids) else None, "wants": []})
            entry["wants"].append((f, i))
    own_bar = bar is None
    bar = progress(total=len(images), desc="LIME feature explanations", unit="image") if own_bar else bar
    placed: dict[int, dict[int, Explanation]] = {f: {} for f in features}
    try:
        with FeatureActivation(model, features, layer=layer, input_spec=input_spec, mean=mean, std=std,
                               device=device, channels=channels) as target:
            column = {f: j for j, f in enumerate(features)}
            for key, entry in images.items():
                if deadline is not None and time.perf_counter() >= deadline:
                    break
                wanted = [f for f, _ in entry["wants"]]
                try:
                    exps = explainer.explain_many(entry["image"], target, columns=[column[f] for f in wanted],
                                                  features=wanted, example_id=entry["id"])
                except Exception as exc:  # one example LIME cannot explain must not cost the others
                    if on_error is None:
                        raise
                    on_error(f"LIME of feature{'s' if len(wanted) > 1 else ''} {', '.join(map(str, wanted))} on "
                             f"example {entry['id'] if entry['id'] is not None else key}", exception_reason(exc))
                    bar.update(1)
                    continue
                for (f, i), e in zip(entry["wants"], exps):
                    placed[f][i] = e
                bar.update(1)
    finally:
        if own_bar:
            bar.close()
    return {f: [placed[f][i] for i in sorted(placed[f])] for f in features}


def shared_rows(top_rows: dict[int, Sequence[int]], per_feature: int, pool: int) -> dict[int, list[int]]:
    """For each feature, ``per_feature`` of its first ``pool`` top rows, chosen so that as few
    distinct rows as possible are explained in all (each distinct row costs one LIME run, whatever
    the features explained on it): greedily the row that the most still-short features have among
    their candidates, the better ranked first. Features keep their order of preference.

    Examples
    --------
    >>> shared_rows({1: [10, 11, 12, 13], 2: [12, 20, 10, 21]}, per_feature=2, pool=4)
    {1: [10, 12], 2: [12, 10]}
    """
    cand = {f: list(rows)[:pool] for f, rows in top_rows.items()}
    picked: dict[int, list[int]] = {f: [] for f in cand}
    need = {f: min(per_feature, len(rows)) for f, rows in cand.items()}
    while any(need[f] > len(picked[f]) for f in cand):
        votes: dict[int, tuple[int, float]] = {}
        for f, rows in cand.items():
            if need[f] <= len(picked[f]):
                continue
            for rank, r in enumerate(rows):
                if r not in picked[f]:
                    n, s = votes.get(r, (0, 0.0))
                    votes[r] = (n + 1, s - rank)
        row = max(votes, key=lambda r: votes[r])
        for f, rows in cand.items():
            if need[f] > len(picked[f]) and row in rows and row not in picked[f]:
                picked[f].append(row)
    return {f: sorted(rows, key=cand[f].index) for f, rows in picked.items()}


_explain_all = explain_features  # interpret_features' parameter of that name is the config's count


def draw_cards(cards: Sequence[FeatureCard], out: Path, dataset: Any, artifacts: dict[str, str],
               modality: Modality | None = None) -> None:
    """Draw each card's picture (``modality.render_card``) to ``out / CARD_DIR / feature_<id>.png``
    and note it in ``artifacts``."""
    modality = modality or get_modality()
    for card in cards:
        rel = f"{CARD_DIR}/feature_{card.feature}.png"
        modality.render_card(card, out / rel,
                             top=None if dataset is None or not card.top_rows else dataset.batch(card.top_rows),
                             bottom=None if dataset is None or not card.bottom_rows else dataset.batch(card.bottom_rows))
        card.image = rel
        artifacts[rel] = str(out / rel)


def explain_cards(interpretation: "Interpretation", layer: Any, *, model: Any, dataset: Any, input_spec: Any = None,
                  modality: Modality | None = None,
                  feature_layer: str | None = None, device: str = "cpu", seed: int = 0,
                  out_dir: str | Path | None = None, on_skip: Callable[[str, str], None] | None = None,
                  order: Sequence[tuple[int, str]] = (), limit: int | None = ANALYSIS["explain_features"],
                  budget_s: float | None = ANALYSIS["explain_budget_s"],
                  lime_examples: int = ANALYSIS["lime_examples"], lime_samples: int = ANALYSIS["lime_samples"],
                  lime_convergence: float | None = ANALYSIS["lime_convergence"],
                  sanity_check: bool = ANALYSIS["sanity_check"], sanity_features: int = ANALYSIS["sanity_features"],
                  sanity_examples: int = ANALYSIS["sanity_examples"],
                  sanity_threshold: float = ANALYSIS["sanity_threshold"],
                  sanity_cascade: bool = ANALYSIS["sanity_cascade"], card_images: int | None = ANALYSIS["card_images"],
                  off_reason: str | None = None) -> Interpretation:
    """Explain the cards' features with LIME in ``order``, then sanity-check them, within a time budget.

    ``order`` is :func:`explanation_order`'s ``(feature, why)`` list; the first ``limit`` features
    are explained on their top ``lime_examples`` examples, one after the other, until ``budget_s``
    seconds have passed (no explanation starts after that; the sanity checks count against the
    same budget). The sanity check runs on up to ``sanity_features`` explained features: those
    the results name first (a finding, a failing assertion, a slice), then the heaviest. With
    ``out_dir`` and images, card pictures are drawn for the first ``card_images`` features of
    ``order`` and every explained one (a picture costs a tenth of a second; at a thousand classes
    every used feature would take minutes, for pictures the report does not show), and pictures
    of other features are removed.

    Updates ``interpretation`` in place (cards, ``sanity``, ``summary``; what an earlier call
    explained is replaced) and returns it. The
    summary gets ``explained_features``, ``explained_examples``, ``lime_*`` timings,
    ``sanity_checked`` and ``explain``: the order rule, ``limit``, ``budget_s``, ``candidates``,
    ``explained``, ``not_explained`` (count by reason) and ``needed`` (every feature the results
    name: ``{feature, why, explained, reason}``). Without a model or images, or with an
    ``off_reason`` (LIME switched off), nothing is explained and the reason says so.
    """
    modality = modality or get_modality()
    cards = {c.feature: c for c in interpretation.cards}
    order = [(int(f), why) for f, why in order if int(f) in cards]
    n_limit = len(order) if limit is None else min(int(limit), len(order))
    chosen, beyond = order[:n_limit], order[n_limit:]
    reasons: dict[int, str] = {f: f"beyond analysis.explain_features ({limit})" for f, _ in beyond}
    explained: dict[int, list[Explanation]] = {}
    sanity: dict[int, SanityResult] = {}
    lime_seconds = forward_seconds = 0.0
    batch_size = None
    t0 = time.perf_counter()
    deadline = None if budget_s is None else t0 + float(budget_s)
    chosen_at_all = off_reason is None and model is not None and dataset is not None
    if not chosen_at_all:  # the caller says why once (explain_stage: one ``skipped`` entry)
        reasons.update({f: off_reason or "LIME needs the model and the images" for f, _ in chosen})
        chosen = []
    if chosen:
        n_lime = max(0, min(int(lime_examples), min(len(cards[f].top_rows) for f, _ in chosen)))
        n_sanity_examples = min(int(sanity_examples), n_lime)
        # each feature on n_lime of its top examples, chosen so that features share images: an image
        # explained for several features costs the forward passes of one explanation
        rows = shared_rows({f: cards[f].top_rows for f, _ in chosen}, n_lime, max(n_lime, 2 * n_lime))
        id_of = {r: i for f, _ in chosen for r, i in zip(cards[f].top_rows, cards[f].top_examples)}
        jobs = {f: dataset.batch(rows[f]) for f, _ in chosen}
        job_ids = {f: [id_of[r] for r in rows[f]] for f, _ in chosen}
        explainer = modality.explainer(num_samples=int(lime_samples), seed=seed, convergence=lime_convergence)
        common = dict(layer=feature_layer, input_spec=input_spec, mean=layer.mean_, std=layer.std_, device=device)
        named = [f for f, why in chosen if not why.startswith(("total |weight|", "tied to"))]
        check = ([f for f in named] + [f for f in features_by_weight(layer) if f in jobs and f not in named]
                 )[:int(sanity_features)] if sanity_check else []
        total = len({i for v in job_ids.values() for i in v}) + len(check) * n_sanity_examples * (8 if sanity_cascade else 1)
        with progress(total=total, desc="explaining features", unit="image") as bar:
            try:
                explained = _explain_all(model, jobs, explainer=explainer, example_ids=job_ids, bar=bar,
                                         on_error=on_skip, deadline=deadline, **common)
            except Exception as exc:  # optional: a model LIME cannot drive costs the pictures, not the run
                if on_skip is None:
                    raise
                on_skip("LIME explanations", exception_reason(exc))
                explained, check = {}, []
                reasons.update({f: f"LIME failed: {exception_reason(exc)}" for f, _ in chosen})
            lime_seconds = time.perf_counter() - t0
            forward_seconds = sum(e.forward_seconds for v in explained.values() for e in v)
            for f in check:
                exps = explained.get(f, [])[:n_sanity_examples]
                if not exps:
                    continue
                if deadline is not None and time.perf_counter() >= deadline:
                    if on_skip is not None:
                        on_skip(f"sanity check of feature {f}", f"the time budget analysis.explain_budget_s "
                                                                 f"({budget_s:g} s) was spent")
                    continue
                try:
                    examples = _batch([e.example for e in exps])
                    sanity[f] = model_randomisation_test(
                        model, f, examples, probes=modality.sanity_probes(examples), explainer=explainer,
                        original_maps=[e.attribution_map() for e in exps], cascade=sanity_cascade,
                        threshold=sanity_threshold, random_state=seed, example_ids=[e.example_id for e in exps],
                        on_explained=lambda: bar.update(1), **common)
                except Exception as exc:
                    if on_skip is None:
                        raise
                    on_skip(f"sanity check of feature {f}", exception_reason(exc))
        batch_size = getattr(explainer, "last_batch_size_", None)
        for f, _ in chosen:
            if not explained.get(f) and f not in reasons:
                reasons[f] = (f"the time budget analysis.explain_budget_s ({budget_s:g} s) was spent"
                              if deadline is not None and time.perf_counter() >= deadline
                              else "no example could be explained")
        untrusted = [f for f, r in sanity.items() if not r.trustworthy]
        if untrusted:
            logger.warning("LIME explanations of features %s did not pass the model-randomisation check",
                           untrusted)
    why = dict(order)
    for f, card in cards.items():  # what this pass explained replaces what an earlier one did
        card.explanations, card.lime_why = explained.get(f, []), why.get(f) if explained.get(f) else None
        drawn_samples = [e.num_samples for e in card.explanations]
        card.lime_samples, card.sanity = int(max(drawn_samples, default=lime_samples)), sanity.get(f)
    interpretation.sanity.clear()
    interpretation.sanity.update(sanity)
    if out_dir is not None:
        pictured = [f for f, _ in order][:len(order) if card_images is None else int(card_images)]
        drawn = [cards[f] for f in dict.fromkeys([*pictured, *(f for f in explained if explained[f])])]
        for card in cards.values():
            card.image = card.thumb = None
        for rel in [k for k in interpretation.artifacts if k.startswith(f"{CARD_DIR}/")]:
            del interpretation.artifacts[rel]
        if dataset is not None:
            draw_cards(drawn, Path(out_dir), dataset, interpretation.artifacts, modality)
        _remove_stale_cards(Path(out_dir) / CARD_DIR, {Path(c.image).name for c in drawn if c.image})
    n_explained = sum(len(v) for v in explained.values())
    n_features = sum(bool(v) for v in explained.values())
    counts: dict[str, int] = {}
    for r in reasons.values():
        counts[r] = counts.get(r, 0) + 1
    needed = [{"feature": f, "why": w, "explained": bool(explained.get(f)),
               **({"reason": reasons[f]} if f in reasons else {})}
              for f, w in order if not w.startswith(("total |weight|", "tied to"))]
    interpretation.summary.update({
        "explained_features": n_features, "explained_examples": n_explained,
        "lime_samples": int(lime_samples) if n_explained else None,
        "lime_convergence": lime_convergence,
        "lime_samples_drawn": (round(float(np.mean([e.num_samples for v in explained.values() for e in v])), 1)
                               if n_explained else None),
        "lime_seconds": round(lime_seconds, 3), "forward_seconds": round(forward_seconds, 3),
        "examples_per_second": round(n_explained / lime_seconds, 3) if lime_seconds > 0 else None,
        "sanity_checked": len(interpretation.sanity),
        "card_images": sum(c.image is not None for c in cards.values()),
        "explain": {"order": "features the results name (findings, failing assertions, top slices), then tied to a "
                             "declared spurious attribute, then by total |weight|",
                    "limit": limit, "budget_s": budget_s, "candidates": len(order), "explained": n_features,
                    "batch_size": batch_size, "not_explained": counts, "needed": needed}})
    for f, r in reasons.items():  # each named feature LIME could have explained here and did not
        if (on_skip is not None and chosen_at_all and why.get(f)
                and not why[f].startswith(("total |weight|", "tied to"))):
            on_skip(f"LIME of feature {f} ({why[f]})", r)
    return interpretation


def _batch(examples: list[Any]) -> Any:
    """Raw examples as one raw batch: arrays stacked (images), anything else in an object array."""
    if all(isinstance(e, np.ndarray) for e in examples):
        return np.stack(examples)
    out = np.empty(len(examples), dtype=object)
    out[:] = examples
    return out


def _remove_stale_cards(directory: Path, keep: set[str]) -> None:
    """Drop card pictures of features this run does not use (left by an earlier run in the same --out)."""
    if not directory.is_dir():
        return
    for path in directory.iterdir():
        if _CARD_NAME.match(path.name) and path.name not in keep:
            path.unlink(missing_ok=True)
