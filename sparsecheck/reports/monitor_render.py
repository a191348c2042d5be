"""Rendering a monitoring batch (the content of ``monitor.json``) as one self-contained HTML page.

The page leads with the verdict, red on an alert and green otherwise, and lists the reasons.
Then it shows the used sparse features by drift (PSI, largest first, the drifted ones marked), the
predicted-class mix of the sparse layer against the reference, the accuracies when the batch has
labels, the assertions and the notes. It renders from the JSON alone, so a batch that an earlier
(or a concurrent) run already scored renders from that run's ``monitor.json``.

Examples
--------
>>> page = to_html({"alert": True, "alerts": ["feature 3 drifted: KS 0.4 (q 1e-09), PSI 0.5"],
...                 "batch": "b.npz", "n": 10, "reference_run": "r1",
...                 "feature_drift": {"features": [{"feature": 3, "ks_statistic": 0.4, "q_value": 1e-9,
...                                                 "psi": 0.5, "drifted": True}]}})
>>> 'data-kind="alert"' in page and "feature 3 drifted" in page
True
"""

from __future__ import annotations

import html
import math
from typing import Any, Mapping

from sparsecheck.reports import format as fmt
from sparsecheck.reports.compare_render import _CSS, paged_table
from sparsecheck.results import AssertionResult, is_failing

__all__ = ["to_html"]

_EXTRA_CSS = """
.verdict.alert { border-color: var(--fail); } .verdict.alert .title { color: var(--fail); }
.verdict.ok { border-color: var(--pass); } .verdict.ok .title { color: var(--pass); }
"""


def _num(value: Any, digits: int = 3) -> str:
    if isinstance(value, bool) or value is None:
        return "—" if value is None else str(value).lower()
    try:
        f = float(value)
    except (TypeError, ValueError):
        return str(value)
    if not math.isfinite(f):
        return "—"
    return f"{f:.2g}" if 0 < abs(f) < 10 ** -digits else f"{f:.{digits}f}"


_pct = fmt.percent


def _table(header: list[str], rows: list[tuple[list[str], str]]) -> str:
    """Rows as ``(cells, row class)``; after compare_render.MAX_ROWS the rest is one click away."""
    e = html.escape
    head = "<thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr></thead>"

    def body(part: list[tuple[list[str], str]]) -> str:
        return "".join(f'<tr class="{cls}">' + "".join(f"<td>{e(c)}</td>" for c in cells) + "</tr>"
                       for cells, cls in part)

    return paged_table(head, rows, body)


def to_html(report: Mapping[str, Any]) -> str:
    """The page of one monitoring batch (no external resources, no script; every value escaped)."""
    e = html.escape
    alert = bool(report.get("alert"))
    alerts = [str(a) for a in report.get("alerts") or []]
    fd = report.get("feature_drift") or {}
    cm = report.get("class_mix") or {}
    features = sorted(fd.get("features") or [], key=lambda r: -(float(r.get("psi") or 0.0)))
    drifted = [r for r in features if r.get("drifted")]
    batch, ref = str(report.get("batch", "?")), str(report.get("reference_run", "?"))
    mlflow = report.get("mlflow") or {}
    kind = "alert" if alert else "ok"
    title = f"ALERT ({len(alerts)})" if alert else "ok: no drift"
    detail = (f"batch {batch} ({report.get('n', '?')} examples, fingerprint {report.get('batch_fingerprint', '?')}) "
              f"against reference run {ref}")
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>sparsecheck monitor {e(batch)}</title>",
        f"<style>{_CSS}{_EXTRA_CSS}</style></head><body><main>",
        f"<h1>sparsecheck monitor: <code>{e(batch)}</code></h1>",
        f'<div class="verdict {kind}" id="verdict" data-kind="{kind}"><span class="title">{e(title)}</span>'
        f'<span class="detail">{e(detail)}</span>',
        '<ul class="changed" id="alerts">' + "".join(f'<li class="bad">{e(a)}</li>' for a in alerts) + "</ul></div>",
    ]
    if mlflow.get("run_id"):
        where = f"MLflow run {mlflow['run_id']} (experiment {mlflow.get('experiment_id', '?')}) at " \
                f"{mlflow.get('tracking_uri', '?')}"
        if mlflow.get("reused"):
            where += "; this batch had already been scored by that run"
        parts.append(f'<p class="note" id="mlflow">{e(where)}</p>')
    parts.append('<h2 id="feature-drift">Feature drift</h2>')
    parts.append(f'<p class="note">{len(drifted)} of {len(features)} used sparse features drifted '
                 f'(q &lt; {e(_num(fd.get("alpha")))} and PSI ≥ {e(_num(fd.get("psi_threshold")))}); '
                 "largest PSI first.</p>")
    if features:
        parts.append(_table(["feature", "PSI", "KS", "q", "reference mean", "batch mean", "drifted"], [
            ([str(r.get("feature")), _num(r.get("psi")), _num(r.get("ks_statistic")), _num(r.get("q_value")),
              _num(r.get("reference_mean")), _num(r.get("batch_mean")), "yes" if r.get("drifted") else "no"],
             "bad" if r.get("drifted") else "") for r in features]))
    parts.append('<h2 id="class-mix">Predicted-class mix</h2>')
    parts.append(f'<p class="note">PSI {e(_num(cm.get("psi")))}, chi-square p {e(_num(cm.get("p_value")))}: '
                 f'{"drifted" if cm.get("drifted") else "stable"}.</p>')
    shares = cm.get("shares") or []
    if shares:
        parts.append(_table(["class", "reference", "batch", "difference"], [
            ([str(s.get("class")), _pct(s.get("reference_share")), _pct(s.get("batch_share")),
              f"{100 * float(s.get('difference') or 0):+.1f} points"], "") for s in shares]))
    accuracy = report.get("accuracy") or {}
    if accuracy:
        parts.append('<h2 id="accuracy">Accuracy</h2><p>'
                     + ", ".join(f"{e(str(k).replace('_', ' '))} {e(_num(v))}" for k, v in accuracy.items()) + "</p>")
    assertions = [AssertionResult.from_dict(a) for a in report.get("assertions") or []]
    parts.append('<h2 id="assertions">Assertions</h2>')
    if assertions:
        parts.append(_table(["assertion", "severity", "status", "message"], [
            ([a.name, a.severity, a.status, a.message], "bad" if is_failing(a, "warning") else "")
            for a in assertions]))
    else:
        parts.append('<p class="empty">No assertion ran on this batch.</p>')
    notes = report.get("notes") or []
    if notes:
        parts.append('<h2 id="notes">Notes</h2><ul>' + "".join(f"<li>{e(str(n))}</li>" for n in notes) + "</ul>")
    parts.append("</main></body></html>")
    return "\n".join(parts) + "\n"
