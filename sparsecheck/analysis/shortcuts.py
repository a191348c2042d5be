"""One finding per shortcut: the spurious findings of a run, folded and pooled, and the training
prevalence that ties a value to a class.

:func:`~sparsecheck.analysis.spurious.find_spurious_features` reports each (class, attribute,
value) that passes its rule. One shortcut can show up several times: on a declared attribute and
on an automatic one that marks the same images, on several automatic attributes, and from its
other side (a class relying on the *absence* of the cue). Here they become one finding each:

* :func:`pool_findings` — a declared finding leads the automatic ones of its shortcut; an automatic
  finding on the images of a declared spurious attribute is reported under the declared name;
  automatic findings of one shortcut are merged;
* :func:`fold_other_sides` — a finding on a value's absence is folded under the finding on it;
* :func:`training_prevalence` — how often each value came with each class in training: evidence
  for every finding, and for an automatic one a condition (a model learns a shortcut only from
  what its training data ties to a class);
* :func:`untied_attributes` — declared attributes that training ties to no class: a model cannot
  have learned a shortcut from them, so they are reviewed as associations, not tested as shortcuts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from sparsecheck.analysis.feature_modes import is_feature_mode
from sparsecheck.analysis.spurious import SpuriousFinding

__all__ = ["training_prevalence", "untied_attributes", "fold_other_sides", "pool_findings", "MIN_AGREEMENT", "MIN_OVERLAP",
           "MIN_SHARED", "MIN_DISJOINT", "NAMING_MARGIN", "MODE_MARGIN"]


def training_prevalence(table: pd.DataFrame, labels: Any, attributes: Sequence[str]
                        ) -> dict[tuple[Any, str, str], tuple[float, float]]:
    """``(class label, attribute, value) → (share of the class's examples with the value, share of
    the other classes' examples with it)``, over the rows of ``table`` (a training split's attributes).

    Examples
    --------
    >>> t = pd.DataFrame({"mark": ["yes", "yes", "no", "no", "no"]})
    >>> training_prevalence(t, np.array([1, 1, 1, 0, 0]), ["mark"])[(1, "mark", "yes")]
    (0.6666666666666666, 0.0)
    """
    labels = np.asarray(labels)
    out: dict[tuple[Any, str, str], tuple[float, float]] = {}
    classes = np.unique(labels)
    for a in attributes:
        if a not in table.columns:
            continue
        col = np.asarray([str(v) for v in table[a].tolist()], dtype=object)
        for value in sorted(set(col)):
            has = col == value
            for c in classes:
                in_c = labels == c
                out[((c.item() if isinstance(c, np.generic) else c), str(a), str(value))] = (float(has[in_c].mean()) if in_c.any() else float("nan"),
                                                     float(has[~in_c].mean()) if (~in_c).any() else float("nan"))
    return out


def untied_attributes(prevalence: Mapping[tuple[Any, str, str], tuple[float, float]], attributes: Sequence[str],
                      min_enrichment: float) -> dict[str, float]:
    """The attributes of which no value is more (or less) frequent in some class's training images
    than in the other classes' by ``min_enrichment``, each with its largest difference.

    A model learns a shortcut from what its training data ties to a class: a stamp on half of every
    class's images can move predictions (the model is not robust to it), but no class can have
    learned to rely on it. The absence side counts too (a class whose images never have snow, while
    the dogs' have it), so an attribute is tied when any of its values is, in either direction.
    Attributes with no training shares (metadata only for the test split) are not listed.

    Examples
    --------
    >>> stamp = training_prevalence(pd.DataFrame({"stamp": ["yes", "no"] * 4}), np.repeat([0, 1], 4), ["stamp"])
    >>> untied_attributes(stamp, ["stamp"], 0.15)
    {'stamp': 0.0}
    >>> snow = training_prevalence(pd.DataFrame({"snow": ["yes"] * 3 + ["no"] * 5}), np.repeat([0, 1], 4), ["snow"])
    >>> untied_attributes(snow, ["snow"], 0.15)
    {}
    """
    largest: dict[str, float] = {}
    for (_, attribute, _), (in_class, others) in prevalence.items():
        if attribute in attributes and np.isfinite(in_class) and np.isfinite(others):
            largest[attribute] = max(largest.get(attribute, 0.0), abs(in_class - others))
    return {a: d for a, d in largest.items() if d < float(min_enrichment)}


#: the least Jaccard agreement of an automatic attribute value's images with a metadata value's for
#: the automatic finding to be reported under the metadata's name
MIN_AGREEMENT = 0.6
#: two findings of one class are one shortcut when this share of the smaller one's images is in the
#: larger one's (a broad automatic attribute, "colourful", can hold a cue's images and more)
MIN_OVERLAP = 0.7
#: two findings that share a feature (a lead, or one listed as carrying the same shortcut) are one
#: shortcut when this share of the smaller one's images is in the other's
MIN_SHARED = 0.3
#: a value whose images are (at least this share) outside another finding's value is its absence
MIN_DISJOINT = 0.9
#: of two automatic findings on one shortcut, the one whose value training ties to the class more
#: strongly (share in the class minus share in the others) by at least this much names it
NAMING_MARGIN = 0.1
#: ... and a feature's own mode (``auto:feature_<id>``) and a measured property, by at least this much
MODE_MARGIN = 0.25


def _carriers(metadata: pd.DataFrame, attribute: str, value: str) -> np.ndarray:
    return (metadata[attribute].astype(str) == str(value)).to_numpy() if attribute in metadata.columns \
        else np.zeros(len(metadata), bool)


def _all_carriers(f: SpuriousFinding, metadata: pd.DataFrame) -> np.ndarray:
    """The images of a finding's value and of the values it is also seen as that mark the same
    images (Jaccard agreement at least :data:`MIN_AGREEMENT`, not merely holding them): one cue,
    seen through several attributes."""
    own = _carriers(metadata, f.attribute, f.value)
    v = own.copy()
    for a in f.also_seen_as:
        other = _carriers(metadata, str(a.get("attribute")), str(a.get("value")))
        if _jaccard(own, other) >= MIN_AGREEMENT:
            v |= other
    return v


def _jaccard(a: np.ndarray, b: np.ndarray) -> float:
    union = int((a | b).sum())
    return float((a & b).sum()) / union if union else 0.0


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    """|a ∩ b| / min(|a|, |b|): how much of the smaller set is in the larger."""
    least = min(int(a.sum()), int(b.sum()))
    return float((a & b).sum()) / least if least else 0.0


def _brief(f: SpuriousFinding) -> dict[str, Any]:
    return {"class": f.class_name, "feature": int(f.feature), "attribute": f.attribute, "value": f.value,
            "score": float(f.score) if np.isfinite(f.score) else None, "automatic": bool(f.automatic),
            "confirmed_by_intervention": bool(f.evidence.get("confirmed_by_intervention"))}


def fold_other_sides(findings: Sequence[SpuriousFinding], metadata: pd.DataFrame) -> list[SpuriousFinding]:
    """Fold each finding on the *absence* of a value under the finding on its presence.

    A shortcut read from the other side: "dog relies on snow=yes" also makes "horse relies on a
    feature that snow suppresses", found as horse on ``snow=no`` (with two classes, always: each
    class's features are the other's negative weights). A finding on value ``w`` is folded under
    a finding on value ``v`` when at least :data:`MIN_DISJOINT` of ``w``'s images lack ``v`` and
    either ``w`` is the complement of ``v`` (together they mark at least :data:`MIN_DISJOINT` of
    the images: ``snow=no`` beside ``snow=yes``, or, for another class, an automatic
    ``mark_br=none`` beside ``mark_br=white``'s twin ``mark_b=white``) or ``w`` is another value
    of the same attribute that most images have (``hue=grey`` beside ``hue=red``). A value of
    another attribute is a complement only when most images have it, its state without a cue:
    with two classes, a cue on one class's images and a cue on the other's together cover nearly
    all the images, and neither is the other's absence. Of two complements,
    a value fewer than half the images have leads (the presence of the cue), then the one on a
    feature that *fires* on its value (not a feature staying low), then the rarer value. The
    folded finding is listed in the lead's ``other_sides`` and no longer counted on its own.

    Examples
    --------
    >>> meta = pd.DataFrame({"snow": ["yes"] * 30 + ["no"] * 70})
    >>> dog = SpuriousFinding("dog", 3, "snow", "yes", 0.5, True, {"weight": 0.8}, "dog on snow")
    >>> horse = SpuriousFinding("horse", 9, "snow", "no", 0.2, True, {"weight": 0.4}, "horse on no snow")
    >>> [(f.class_name, [o["class"] for o in f.other_sides]) for f in fold_other_sides([dog, horse], meta)]
    [('dog', ['horse'])]
    """
    out = list(findings)
    n = max(len(metadata), 1)

    def priority(f: SpuriousFinding) -> tuple[bool, bool, float, float]:
        share = float(_carriers(metadata, f.attribute, f.value).mean())
        return (share >= 0.5, float(f.evidence.get("weight") or 0.0) <= 0, share, -f.score)

    folded: set[int] = set()
    for lead in sorted(out, key=priority):
        if id(lead) in folded:
            continue
        own = _carriers(metadata, lead.attribute, lead.value)
        v = _all_carriers(lead, metadata)
        if not own.any():
            continue
        for other in out:
            if other is lead or id(other) in folded or (other.attribute, other.value) == (lead.attribute, lead.value):
                continue
            if priority(other) < priority(lead):
                continue  # the other one leads (it is met later in this order only if folded already)
            w = _carriers(metadata, other.attribute, other.value)
            same = other.attribute == lead.attribute
            base = own if same else v
            if not w.any() or (w & ~base).sum() < MIN_DISJOINT * w.sum():
                continue
            # another attribute's value is the lead's other side only when most images have it
            # (``mark_br=none``): with two classes, two cues, one on each class's images, are
            # complements too, and neither is the other's absence
            complement = (w | base).mean() >= MIN_DISJOINT and (
                same or (other.class_name != lead.class_name and w.mean() > 0.5))
            majority = same and w.sum() / n >= 0.5
            if complement or majority:
                lead.other_sides.append(_brief(other))
                folded.add(id(other))
    return [f for f in out if id(f) not in folded]


def _tie(finding: SpuriousFinding) -> float | None:
    """How much more often the finding's value comes with its class than with the others in
    training (``train_share_in_class - train_share_others``); None without training shares."""
    a, b = finding.evidence.get("train_share_in_class"), finding.evidence.get("train_share_others")
    try:
        tie = float(a) - float(b)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return tie if np.isfinite(tie) else None


def _names_better(f: SpuriousFinding, lead: SpuriousFinding) -> bool:
    """Whether ``f`` rather than ``lead`` names their shortcut (two automatic findings of one class
    on the same images).

    The value that training ties to the class more strongly, by at least :data:`NAMING_MARGIN`: a
    shortcut is learned from the images that carry the cue in training, so the value that marks
    those images names it, where a broader or partial proxy of them ties less (on the development
    tasks: ``sharpness=high`` for images given noise, 57% of the class and 18% of the others in
    training; the values that marked the cued images, 85–91% and 1–5%). A feature's own mode
    (``auto:feature_<id>``) against a measured property needs :data:`MODE_MARGIN`. Between values
    that tie about as much: a measured property before a feature's own modes (``auto:feature_<id>``
    says only that the feature fires), then the value the feature tracks best."""
    a, b = _tie(f), _tie(lead)
    if a is not None and b is not None:
        modes = is_feature_mode(f.attribute), is_feature_mode(lead.attribute)
        # a feature's mode is chosen for firing on its class (and rarely on others): it ties more by
        # construction, partly through the class's own look, so it names the shortcut instead of a
        # measured property only when it ties far more
        margin = NAMING_MARGIN if modes[0] == modes[1] else MODE_MARGIN
        if abs(a - b) >= margin:
            return a > b
    rank = lambda g: (not is_feature_mode(g.attribute), float(g.evidence.get("auc") or 0.0))  # noqa: E731
    return rank(f) > rank(lead)


def pool_findings(declared: Sequence[SpuriousFinding], automatic: Sequence[SpuriousFinding], metadata: pd.DataFrame,
                  spurious_attributes: Sequence[str]) -> tuple[list[SpuriousFinding], list[SpuriousFinding]]:
    """One finding per shortcut across declared and automatic attributes.

    Two findings for the same class whose values mark (nearly) the same images (Jaccard agreement
    at least :data:`MIN_AGREEMENT`) are one shortcut. The declared finding leads and the automatic
    one is listed in its ``also_seen_as``; when the automatic one was confirmed by intervention and
    the declared one was not, the declared one takes that evidence. An automatic finding whose
    images agree with a declared spurious attribute's value that has no finding of its own becomes
    that declared finding, under the declared name. An automatic finding that matches other
    metadata stays automatic and names the match. Automatic findings of one class on attributes
    that agree are merged, the value training ties to the class most strongly leading (:func:`_names_better`).

    Returns
    -------
    (declared, automatic) : the findings to report and count as each.

    Examples
    --------
    >>> meta = pd.DataFrame({"mark": ["yes"] * 20 + ["no"] * 80, "auto:mark_br": ["white"] * 19 + ["none"] * 81})
    >>> auto = SpuriousFinding("three", 5, "auto:mark_br", "white", 0.3, True,
    ...                        {"confirmed_by_intervention": True}, "three on a white mark", automatic=True)
    >>> d, a = pool_findings([], [auto], meta, ["mark"])
    >>> [(f.attribute, f.value, f.also_seen_as[0]["attribute"]) for f in d], a
    ([('mark', 'yes', 'auto:mark_br')], [])
    """
    declared = list(declared)
    spurious = [str(a) for a in spurious_attributes]
    metadata_columns = [c for c in metadata.columns if c != "id" and not str(c).startswith("auto:")]
    kept_auto: list[SpuriousFinding] = []
    for f in sorted(automatic, key=lambda f: -f.score):
        mine = _carriers(metadata, f.attribute, f.value)
        # the same shortcut as a declared finding?
        twin = _same_shortcut(f, mine, declared, metadata)
        if twin is not None:
            _absorb(*twin, f)
            continue
        sib = _same_shortcut(f, mine, kept_auto, metadata)  # an earlier automatic finding of the class?
        if sib is not None:
            lead, agreement = sib
            if _names_better(f, lead):
                # the value training ties to the class names the shortcut (then the one the
                # feature tracks best: the corner's mark, AUC 1.00, rather than "white
                # foreground", 0.94): it leads, the other is listed
                kept_auto[kept_auto.index(lead)] = f
                for seen in lead.also_seen_as:
                    f.also_seen_as.append(seen)
                lead.also_seen_as = []
                _absorb(f, agreement, lead)
            else:
                _absorb(lead, agreement, f)
            continue
        # the images of a metadata value?
        best = (None, None, 0.0)
        for col in metadata_columns:
            for value in pd.unique(metadata[col].astype(str)):
                j = _jaccard(mine, _carriers(metadata, col, value))
                if j > best[2]:
                    best = (col, value, j)
        col, value, j = best
        if col is not None and j >= MIN_AGREEMENT and col in spurious:
            declared.append(_renamed(f, col, str(value), j))
            continue
        if col is not None and j >= MIN_AGREEMENT:
            f.also_seen_as.append({"attribute": col, "value": str(value), "agreement": round(j, 3)})
        kept_auto.append(f)
    return declared, kept_auto


def _same_shortcut(f: SpuriousFinding, mine: np.ndarray, pool: Sequence[SpuriousFinding],
                   metadata: pd.DataFrame) -> tuple[SpuriousFinding, float] | None:
    """The finding in ``pool`` that is ``f``'s shortcut: the same class, both values held by a
    minority of the images (a majority value is the absence of a cue: :func:`fold_other_sides`),
    and either a feature in common (any of the features each finding lists as carrying its
    shortcut) with some of the smaller one's images in the other's (:data:`MIN_SHARED`: the class
    relies on that feature, whatever the attributes it is seen through) or most of them
    (:data:`MIN_OVERLAP`); the best such, with its overlap."""
    best = None
    if mine.mean() >= 0.5:  # a value most images have is an absence (fold_other_sides), not a cue to merge
        return None
    for d in pool:
        theirs = _carriers(metadata, d.attribute, d.value)
        if d.class_name != f.class_name or theirs.mean() >= 0.5:
            continue
        overlap = _overlap(mine, theirs)
        # a feature that carries the other finding carries this one, on images that overlap (with
        # two classes, one feature can carry both classes' shortcuts: it fires on one cue and goes
        # quiet on the other, so the images must overlap too)
        shared = bool(set(f.features or [f.feature]) & set(d.features or [d.feature]))
        if (shared and overlap >= MIN_SHARED) or overlap >= MIN_OVERLAP:
            key = (shared, overlap)
            if best is None or key > best[0]:
                best = (key, d, overlap)
    return None if best is None else (best[1], best[2])


def _absorb(lead: SpuriousFinding, agreement: float, other: SpuriousFinding) -> None:
    seen = {"attribute": other.attribute, "value": other.value, "agreement": round(agreement, 3),
            "feature": int(other.feature), "automatic": bool(other.automatic)}
    tie = _tie(other)
    if tie is not None:
        seen["training_tie"] = round(tie, 3)
    lead.also_seen_as.append(seen)
    for feat in other.features or [other.feature]:
        if feat not in lead.features:
            lead.features.append(int(feat))
    if other.evidence.get("confirmed_by_intervention") and not lead.evidence.get("confirmed_by_intervention"):
        lead.evidence["confirmed_by_intervention"] = True
        lead.evidence["intervention"] = other.evidence.get("intervention")
        lead.evidence["confirmed_via"] = f"{other.attribute}={other.value}"
        lead.sentence += f"; confirmed by intervention on the same images ({other.attribute}={other.value})"


def _renamed(f: SpuriousFinding, attribute: str, value: str, agreement: float) -> SpuriousFinding:
    """An automatic finding reported under the declared attribute whose value marks the same images."""
    seen = {"attribute": f.attribute, "value": f.value, "agreement": round(agreement, 3), "automatic": True}
    sentence = f.sentence.replace(f"{f.attribute}={f.value}", f"{attribute}={value}")
    sentence += (f" (found on the automatic attribute {f.attribute}={f.value}, which marks the same images: "
                 f"{100 * agreement:.0f}% agreement)")
    return replace(f, attribute=attribute, value=value, sentence=sentence, automatic=False,
                   also_seen_as=[*f.also_seen_as, seen])
