"""The report as an investigation: which features matter, and each finding's evidence in words.

The HTML report leads with *why* a run failed. Two questions decide what it shows first:

* **Which features need a full card** (:func:`featured_features`): every feature named by a
  spurious finding, by a failing assertion (in its ``details`` — ``violations``, ``findings``,
  ``features`` — or its failing examples) and by the top significant feature slices
  (``results["feature_slices"]``, predicates ``feat_<id>``). The others stay in a compact table.
* **What a finding's numbers say** (:func:`finding_evidence`): the spurious-findings evidence
  (:mod:`sparsecheck.analysis.spurious`: association AUC, the class's recall with and without the
  value against the other classes', the sparse layer's recall before and after zeroing the
  feature's weight) as sentences and as rows of a small bar chart.

Everything reads the results.json form (plain dicts); keys a run lacks are skipped.

Examples
--------
>>> results = {"spurious_findings": [{"class": "seven", "feature": 44, "attribute": "corner_mark",
...                                   "value": "yes", "evidence": {"auc": 0.99, "weight": 0.79}}],
...            "assertions": [{"name": "few", "status": "fail", "severity": "error",
...                            "details": {"features": [3, 44]}}],
...            "feature_slices": [{"predicates": {"feat_7": "high"}, "significant": True}]}
>>> featured = featured_features(results)
>>> list(featured), featured[44]
([44, 3, 7], ['finding: seven on corner_mark = yes', 'assertion few fails'])
>>> finding_evidence(results["spurious_findings"][0])["words"][0]
'Class seven gives feature 44 a weight of 0.79.'
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from sparsecheck.reports import format as fmt
from sparsecheck.reports.format import finite as finite_number
from sparsecheck.reports.format import weight as fmt_weight
from sparsecheck.results import failing_assertions

__all__ = ["featured_features", "assertion_features", "finding_evidence", "fmt_weight", "finite_number"]

_FEAT_COLUMN = re.compile(r"^feat(?:ure)?_(\d+)$")


def _int(x: Any) -> int | None:
    v = finite_number(x)
    return int(v) if v is not None and v == int(v) else None


def assertion_features(assertion: Mapping[str, Any], limit: int = 6) -> list[int]:
    """Feature ids an assertion record names: ``feature`` / ``features`` keys anywhere in its
    ``details`` and failing examples, in order, at most ``limit``."""
    found: list[int] = []

    def walk(value: Any, key: str | None = None) -> None:
        if len(found) >= limit:
            return
        if isinstance(value, Mapping):
            for k, v in value.items():
                walk(v, str(k))
        elif isinstance(value, (list, tuple)):
            if key == "features":
                for v in value:
                    f = _int(v)
                    if f is not None and f not in found and len(found) < limit:
                        found.append(f)
            else:
                for v in value:
                    walk(v)
        elif key == "feature":
            f = _int(value)
            if f is not None and f not in found:
                found.append(f)

    walk(assertion.get("details"))
    walk(assertion.get("failing_examples"))
    return found


def featured_features(results: Mapping[str, Any], *, top_slices: int = 3,
                      per_assertion: int = 6) -> dict[int, list[str]]:
    """Features that get a full card, each with why, in the order a reader meets them.

    Parameters
    ----------
    results : mapping
        The results.json dict.
    top_slices : int
        How many of the significant feature slices (best first) count.
    per_assertion : int
        At most this many features per failing assertion (warning severity included).

    Returns
    -------
    dict feature id → reasons (``"finding: …"``, ``"assertion … fails"``, ``"slice …"``)
    """
    out: dict[int, list[str]] = {}

    def add(feature: Any, reason: str) -> None:
        f = _int(feature)
        if f is None:
            return
        reasons = out.setdefault(f, [])
        if reason not in reasons:
            reasons.append(reason)

    for finding in [*(results.get("spurious_findings") or []), *(results.get("automatic_findings") or [])]:
        if isinstance(finding, Mapping):
            add(finding.get("feature"), f"finding: {finding.get('class')} on "
                                        f"{finding.get('attribute')} = {finding.get('value')}")
    assertions = [a for a in results.get("assertions") or [] if isinstance(a, Mapping)]
    for a in failing_assertions(assertions, "warning"):
        for f in assertion_features(a, per_assertion):
            add(f, f"assertion {a.get('name')} fails")
    shown = 0
    for s in results.get("feature_slices") or []:
        if shown >= top_slices:
            break
        if not isinstance(s, Mapping) or s.get("significant") is False:
            continue
        preds = s.get("predicates")
        if not isinstance(preds, Mapping):
            continue
        label = " ∧ ".join(f"{k} = {v}" for k, v in preds.items())
        hits = [m for m in (_FEAT_COLUMN.match(str(k)) for k in preds) if m]
        for m in hits:
            add(m.group(1), f"slice {label}")
        shown += bool(hits)
    return out


def _pct(x: float) -> str:
    return fmt.percent(x, 0)


_points, _change = fmt.points, fmt.change


def _tie_words(seen: Mapping[str, Any]) -> str:
    """"; training tie +39 points" for an *also seen as* entry that has its training tie
    (:func:`~sparsecheck.analysis.shortcuts.pool_findings`)."""
    tie = finite_number(seen.get("training_tie"))
    return "" if tie is None else f"; training tie {_points(tie)}"


def finding_evidence(finding: Mapping[str, Any]) -> dict[str, Any]:
    """A spurious finding's evidence as sentences and chart rows.

    Returns
    -------
    dict
        ``words``: list of sentences (association, outcome, intervention); ``bars``: rows
        ``{"group", "label", "value", "kind"}`` (value in [0, 1]; kind ``with`` / ``without``)
        for a bar chart of recalls; ``table``: every evidence item as ``(name, value)``.
    """
    ev = finding.get("evidence") if isinstance(finding.get("evidence"), Mapping) else {}
    g = {k: finite_number(v) for k, v in ev.items()}
    cls, feat = finding.get("class"), finding.get("feature")
    av = f"{finding.get('attribute')} = {finding.get('value')}"
    words: list[str] = []
    if g.get("weight") is not None:
        words.append(f"Class {cls} gives feature {feat} a weight of {g['weight']:.2f}.")
    auc, q = g.get("auc"), g.get("q_value")
    if auc is not None:
        words.append(f"Association: the feature fires more on {av} than on the rest — AUC {auc:.2f} "
                     f"(1.00: it separates them perfectly, 0.50: not at all)"
                     + (f", q = {q:.1e}." if q is not None else "."))
    rw, rwo = g.get("recall_with"), g.get("recall_without")
    if rw is not None and rwo is not None:
        n = (f" (n = {_int(ev.get('n_with'))} and {_int(ev.get('n_without'))})"
             if _int(ev.get("n_with")) is not None and _int(ev.get("n_without")) is not None else "")
        text = f"Outcome: {cls} examples are recognised {_pct(rw)} of the time with {av} and {_pct(rwo)} without{n}"
        ow, owo = g.get("others_accuracy_with"), g.get("others_accuracy_without")
        if ow is not None and owo is not None:
            text += f"; other classes {_pct(ow)} with, {_pct(owo)} without"
        csg = g.get("class_specific_gap")
        if csg is not None:
            text += f" — a class-specific advantage of {_points(csg)}"
        words.append(text + ".")
    dw, dwo = g.get("ablation_drop_with"), g.get("ablation_drop_without")
    if dw is not None and dwo is not None:
        text = (f"Ablation: with feature {feat}'s weight for {cls} set to zero, the sparse layer's "
                f"probability of {cls} {_change(dw)} on examples with {av} and {_change(dwo)} without")
        aw, sw = g.get("ablated_recall_with"), g.get("sparse_recall_with")
        if aw is not None and sw is not None:
            text += f"; its recall with {av} goes from {_pct(sw)} to {_pct(aw)}"
        words.append(text + ".")
    bars: list[dict[str, Any]] = []
    for group, kw, kwo in ((f"{cls}, model", "recall_with", "recall_without"),
                           ("other classes, model", "others_accuracy_with", "others_accuracy_without"),
                           (f"{cls}, sparse layer", "sparse_recall_with", "sparse_recall_without"),
                           (f"{cls}, feature {feat} removed", "ablated_recall_with", "ablated_recall_without")):
        if g.get(kw) is not None and g.get(kwo) is not None:
            bars.append({"group": group, "label": f"with {av}", "value": min(1.0, max(0.0, g[kw])), "kind": "with"})
            bars.append({"group": group, "label": "without", "value": min(1.0, max(0.0, g[kwo])),
                         "kind": "without"})
    features = [f for f in (_int(v) for v in finding.get("features") or []) if f is not None and f != _int(feat)]
    if features:
        words.append(f"The same shortcut is carried by feature{'s' if len(features) > 1 else ''} "
                     f"{', '.join(map(str, features))} of {cls} too: one finding, {len(features) + 1} features.")
    iv = ev.get("intervention") if isinstance(ev.get("intervention"), Mapping) else None
    cue = iv.get("cue_estimate") if iv is not None and isinstance(iv.get("cue_estimate"), Mapping) else None
    if cue is not None and not cue.get("description") and iv is not None and iv.get("cue"):
        # a cue given in data.interventions: only its picture was drawn
        words.append(f"The cue, as given in data.interventions: {iv.get('cue')}.")
    elif cue is not None:
        explained = finite_number(cue.get("explained"))
        noun = str((iv or {}).get("noun") or "image")
        words.append(f"The cue, learned from the {noun}s: {cue.get('description')}"
                     + (f" (it reproduces {_pct(explained)} of how the {noun}s with {av} differ from the other "
                        f"{noun}s of their class)" if explained is not None else "") + ".")
    if iv is not None and (iv.get("n_put") or iv.get("n_remove")):
        control = "in the control" if iv.get("control") else "without the cue"
        parts = []
        if iv.get("n_put"):
            parts.append(f"with the cue put on {iv['n_put']:,} {iv.get('noun') or 'image'}s of other classes, the model takes "
                         f"{_pct(iv.get('flip_rate'))} of them for {cls} ({_pct(iv.get('flip_ci_low'))}–"
                         f"{_pct(iv.get('flip_ci_high'))}; {_pct(iv.get('baseline_rate'))} {control})")
        if iv.get("n_remove"):
            before, after = finite_number(iv.get("recall_before")), finite_number(iv.get("recall_after"))
            verb = "lowers" if (before or 0) > (after or 0) else "raises" if (before or 0) < (after or 0) else "leaves"
            parts.append(f"taking it off {iv['n_remove']:,} {cls} {iv.get('noun') or 'image'}s {verb} their recall "
                         + (f"from {_pct(before)} to {_pct(after)}" if verb != "leaves" else f"at {_pct(before)}"))
        text = "Intervention: " + "; ".join(parts)
        text += " — confirmed." if iv.get("confirmed") else " — not confirmed."
        words.append(text)
    for other in finding.get("other_sides") or []:
        if isinstance(other, Mapping):
            words.append(f"The other side of it: class {other.get('class')} relies on feature {other.get('feature')}, "
                         f"which fires on {other.get('attribute')} = {other.get('value')} — on the absence of "
                         f"{av} (folded here, not counted on its own).")
    seen = [a for a in finding.get("also_seen_as") or [] if isinstance(a, Mapping)]
    if seen:
        words.append("The same images are marked by " + ", ".join(
            f"{a.get('attribute')} = {a.get('value')}" + (f" ({_pct(finite_number(a.get('agreement')) or 0)} "
                                                          f"agreement" + _tie_words(a) + ")"
                                                          if a.get("agreement") is not None else "")
            for a in seen) + "." + (" (Training tie: the share of the class's training images with the value minus "
                                    "the other classes' share.)"
                                    if any(finite_number(a.get("training_tie")) is not None for a in seen) else ""))
    if iv is not None and iv.get("n_put"):
        bars += [{"group": f"other classes taken for {cls}", "label": "cue put on",
                  "value": min(1.0, max(0.0, float(iv.get("flip_rate") or 0.0))), "kind": "with"},
                 {"group": f"other classes taken for {cls}", "label": "control" if iv.get("control") else "as they are",
                  "value": min(1.0, max(0.0, float(iv.get("baseline_rate") or 0.0))), "kind": "without"}]
    table = [(k.replace("_", " "), v) for k, v in ev.items() if not isinstance(v, (Mapping, list))]
    table += [(f"intervention {k.replace('_', ' ')}", v) for k, v in (iv or {}).items()
              if not isinstance(v, (Mapping, list))]
    return {"words": words, "bars": bars, "table": table}

