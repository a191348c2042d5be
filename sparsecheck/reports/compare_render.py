"""Rendering a run comparison: Markdown for the terminal, a self-contained HTML page for a browser.

The comparison itself (what changed, what is a regression) lives in
:mod:`sparsecheck.reports.compare`; this module only says it. Both renderings lead with the
verdict and a "what changed" summary, and the verdict's colour follows it:

* **regression** (red) — B regressed against A; the command exits 1;
* **still failing** (amber) — nothing got worse, but B fails its gate (fail → fail): not green;
* **no regression** (green) — nothing got worse and B passes (or has no status).

Examples
--------
>>> from sparsecheck.reports.compare import compare_results
>>> fail = {"status": "fail", "assertions": [{"name": "acc", "status": "fail", "severity": "error"}]}
>>> verdict(compare_results(fail, fail))["kind"]
'still-failing'
>>> "No new regression, but B still fails" in to_markdown(compare_results(fail, fail))
True
"""

from __future__ import annotations

import html
import re
from typing import TYPE_CHECKING, Any

from sparsecheck.reports import format as fmt

if TYPE_CHECKING:  # pragma: no cover
    from sparsecheck.analysis.matching import FeatureMatching
    from sparsecheck.reports.comparison import ClassFeature, RunComparison

__all__ = ["verdict", "what_changed", "model_lines", "to_markdown", "to_html"]

#: table rows shown before the rest collapses (one click away) in the HTML page
MAX_ROWS = 15
#: metrics (as compare names them) that the "what changed" summary always reports
_HEADLINE_METRICS = {"dense test accuracy": "model accuracy (test)",
                     "sparse layer: sparse accuracy": "sparse layer accuracy (test)"}
_GOOD_CHANGES = {"fixed", "better", "resolved", "gone"}
_STILL_BAD = {"still_failing", "added_failing", "persisting"}


def verdict(c: "RunComparison") -> dict[str, str]:
    """``kind`` (regression / still-failing / no-regression), a ``title`` and a one-line ``detail``."""
    status = f"status {c.status_a or '?'} → {c.status_b or '?'}"
    if c.has_regression:
        return {"kind": "regression", "title": f"REGRESSION ({len(c.regressions)})",
                "detail": f"{status}; B is worse than A — the command exits 1"}
    if c.status_b == "fail":
        return {"kind": "still-failing", "title": "No new regression, but B still fails",
                "detail": f"{status}; nothing got worse than A, yet B does not pass its gate"}
    return {"kind": "no-regression", "title": "no regression", "detail": f"{status}; nothing got worse than A"}


def what_changed(c: "RunComparison") -> list[tuple[str, str]]:
    """One ``(tone, sentence)`` per kind of change, worst first; tone is bad / warn / good / neutral."""
    out: list[tuple[str, str]] = []
    by = lambda items, change: [x for x in items if x.change == change]  # noqa: E731
    newly = [a for a in c.assertions if a.change == "newly_failing"]
    if newly:
        out.append(("bad", f"{fmt.count(len(newly), 'assertion')} newly fail{'s' if len(newly) == 1 else ''}: " + ", ".join(a.name for a in newly[:4])
                    + (f" and {len(newly) - 4} more" if len(newly) > 4 else "")))
    worse = [s for s in c.slices if s.is_regression]
    if worse:
        out.append(("bad", f"{fmt.count(len(worse), 'slice')} got worse or newly significant: "
                    + ", ".join(s.label for s in worse[:3]) + (f" and {len(worse) - 3} more" if len(worse) > 3 else "")))
    new = by(c.spurious, "new")
    if new:
        out.append(("bad", f"{fmt.count(len(new), 'new spurious finding')}: "
                    + ", ".join(f"{s.class_name} on {s.attribute}={s.value}" for s in new[:3])))
    still = [a for a in c.assertions if a.change in ("still_failing", "added_failing")]
    if still:
        out.append(("warn", f"{fmt.count(len(still), 'assertion')} still fail{'s' if len(still) == 1 else ''}"
                    + (" (failing in A too)" if any(a.change == "still_failing" for a in still) else "")
                    + ": " + ", ".join(a.name for a in still[:4]) + (f" and {len(still) - 4} more" if len(still) > 4 else "")))
    persisting = by(c.spurious, "persisting")
    if persisting:
        out.append(("warn", f"{fmt.count(len(persisting), 'spurious finding')} persist{'s' if len(persisting) == 1 else ''}: "
                    + ", ".join(f"{s.class_name} on {s.attribute}={s.value}" for s in persisting[:3])))
    fixed = by(c.assertions, "fixed")
    if fixed:
        out.append(("good", f"{fmt.count(len(fixed), 'assertion')} fixed: " + ", ".join(a.name for a in fixed[:4])))
    better = by(c.slices, "better")
    if better:
        out.append(("good", f"{fmt.count(len(better), 'slice')} got better: " + ", ".join(s.label for s in better[:3])))
    resolved = by(c.spurious, "resolved")
    if resolved:
        out.append(("good", f"{fmt.count(len(resolved), 'spurious finding')} resolved: "
                    + ", ".join(f"{s.class_name} on {s.attribute}={s.value}" for s in resolved[:3])))
    for m in c.metrics:
        if m.name in _HEADLINE_METRICS and m.delta is not None and m.a is not None and m.b is not None:
            tone = "good" if m.delta > 0.005 else "bad" if m.delta < -0.005 else "neutral"
            out.append((tone, f"{_HEADLINE_METRICS[m.name]} {100 * m.a:.1f}% → {100 * m.b:.1f}% "
                              f"({100 * m.delta:+.1f} points)"))
    changed = [f for f in c.features if f.changed]
    if changed:
        out.append(("neutral", f"{fmt.count(len(changed), 'class')} changed features: "
                    + ", ".join(f"{f.class_name} (+{len(f.gained)} −{len(f.lost)})" for f in changed[:5])
                    + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")))
    if not out:
        out.append(("neutral", "nothing changed between the runs' assertions, slices, findings and features"))
    return out


# --------------------------------------------------------------------------- tables
def _md(value: Any) -> str:
    """A value as inert Markdown text (a table cell, a list item): newlines flattened, backslashes,
    pipes and backticks escaped, ``<`` and ``>`` as entities, so no class name or metadata value
    splits a row, opens a code span or becomes HTML in a Markdown renderer.

    >>> print(_md("a|b <script>`x`\\n c"))
    a\\|b &lt;script&gt;\\`x\\` c
    """
    text = " ".join(str(value).split())
    for char, escaped in (("\\", "\\\\"), ("|", "\\|"), ("`", "\\`"), ("<", "&lt;"), (">", "&gt;")):
        text = text.replace(char, escaped)
    return text


def _code(value: Any) -> str:
    """A value as a Markdown code span, its fence longer than any run of backticks inside it.

    >>> _code("run1"), _code("a`b")
    ('`run1`', '``a`b``')
    """
    text = " ".join(str(value).split())
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _feat(feature: int | None, score: float | None) -> str:
    if feature is None:
        return "—"
    return f"{feature}" + (f" ({score:.3g})" if score is not None else "")


def _lost(f: "ClassFeature") -> str:
    if f.best_correlation is None:
        return f"{f.feature}"
    near = f"nearest {f.nearest}, " if f.nearest is not None else ""  # may be matched to another one
    return f"{f.feature} ({near}abs. corr. {f.best_correlation:.2f})"


def _change_label(change: str, regression: bool) -> str:
    return f"⚠ {change}" if regression else change


def _matching_line(m: "FeatureMatching") -> str:
    if m.method == "identity":
        return (f"Features matched by id (same model): {len(m.matches)} shared, {len(m.unmatched_a)} only in A, "
                f"{len(m.unmatched_b)} only in B.")
    return (f"Features matched by activation correlation on {m.n_shared} shared evaluation examples "
            f"(Hungarian assignment, |r| ≥ {m.min_correlation:g}): {len(m.matches)} pairs, "
            f"{len(m.unmatched_a)} of A's and {len(m.unmatched_b)} of B's used features unmatched.")


def _representation_line(c: "RunComparison") -> str | None:
    r = c.representation
    if r is None:
        return None

    def cka(value: float | None) -> str:
        return "—" if value is None or value != value else f"{value:.3f}"

    parts = []
    if r.cka_full is not None:
        parts.append(f"whole feature layer {cka(r.cka_full)} ({r.dim_a} → {r.dim_b} features, {r.n_full} shared "
                     "test examples)")
    if r.cka_used is not None:
        parts.append(f"used sparse features {cka(r.cka_used)} ({r.used_a} → {r.used_b} features, {r.n_used} "
                     "examples)")
    return ("Representation similarity (linear CKA, 1 = the same up to rotation and scale, near 0 = unrelated): "
            + "; ".join(parts) + ".")


def _test_data_line(c: "RunComparison") -> tuple[str, str] | None:
    """``(tone, sentence)`` about the test data: warn when the runs saw different data."""
    t = c.test_data
    if t is None:
        return None
    tone = "warn" if t.same is False else "good" if t.same else "neutral"
    return tone, f"Test data: {t.message}."


def sections(c: "RunComparison") -> list[tuple[str, list[str], list[list[str]], str]]:
    """``(title, header, rows, text when empty)`` per section; a regression's change cell starts with ⚠."""
    a_rows = [[a.name, a.severity, str(a.status_a or "—"), str(a.status_b or "—"),
               _change_label(a.change, a.is_regression), fmt.value(a.observed_b), fmt.value(a.threshold)]
              for a in c.assertions if a.change != "passing"]
    s_rows = [[s.label, fmt.rate(s.error_rate_a, s.ci_a, s.size_a), fmt.rate(s.error_rate_b, s.ci_b, s.size_b),
               _change_label(s.change + (" (significant)" if s.change == "new" and s.significant_b else ""),
                             s.is_regression)]
              for s in c.slices if s.change != "unchanged"]
    sp_rows = [[s.class_name, f"{s.attribute}={s.value}", _feat(s.feature_a, s.score_a),
                _feat(s.feature_b, s.score_b), _change_label(s.change, s.is_regression)
                + (" (same feature)" if s.same_feature else "")] for s in c.spurious]
    m_rows = [[m.name, fmt.value(m.a), fmt.value(m.b), fmt.value(m.delta, signed=True)] for m in c.metrics]
    f_rows = [[f.class_name, f"{f.n_a} → {f.n_b}",
               ", ".join(f"{k.feature_a}→{k.feature_b} (r={k.correlation:.2f})" for k in f.kept) or "—",
               ", ".join(_lost(x) for x in f.lost) or "—", ", ".join(_lost(x) for x in f.gained) or "—"]
              for f in sorted(c.features, key=lambda f: not f.changed)]
    unchanged = sum(1 for s in c.slices if s.change == "unchanged")
    return [
        ("Assertions", ["assertion", "severity", "A", "B", "change", "observed (B)", "threshold"], a_rows,
         f"No assertion changed ({sum(1 for a in c.assertions if a.change == 'passing')} pass in both)."),
        ("Slices", ["slice", "A error rate [95% CI] (n)", "B error rate [95% CI] (n)", "change"], s_rows,
         f"No slice changed beyond its interval ({unchanged} matched slices unchanged)."),
        ("Spurious findings", ["class", "attribute", "A feature (score)", "B feature (score)", "change"],
         sp_rows, "No spurious findings in either run."),
        ("Metrics", ["metric", "A", "B", "Δ"], m_rows, "No metrics in common."),
        ("Features by class", ["class", "features A → B", "kept (A→B)", "lost (A)", "gained (B)"], f_rows,
         "Features were not compared."),
    ]


def model_lines(c: "RunComparison") -> list[str]:
    """One line per side given as a model URI: the model version it resolved to and the run that checked it."""
    out = []
    for side, run, model in (("A", c.run_a, c.model_a), ("B", c.run_b, c.model_b)):
        if not model:
            continue
        checked = "checked now (--run-missing) by run" if model.get("checked_now") else "checked by run"
        out.append(f"{side}: {model.get('given')} = {model.get('label')}, {checked} {run}")
    return out


# --------------------------------------------------------------------------- Markdown
def to_markdown(c: "RunComparison") -> str:
    """The comparison as Markdown (what ``sparsecheck compare`` prints): verdict, what changed, tables."""
    v = verdict(c)
    out: list[str] = [f"# sparsecheck compare: {_code(c.run_a)} → {_code(c.run_b)}", ""]
    models = model_lines(c)
    if models:
        out += [f"- {_md(line)}" for line in models] + [""]
    title = {"regression": f"**REGRESSION** ({len(c.regressions)})", "still-failing": f"**{v['title']}**",
             "no-regression": "**no regression**"}[v["kind"]]
    out += [f"Verdict: {title}. Status: {c.status_a or '?'} → {c.status_b or '?'}.", ""]
    data_line = _test_data_line(c)
    if data_line is not None:
        out += [("⚠ " if data_line[0] == "warn" else "") + _md(data_line[1]), ""]
    out += ["What changed:", ""] + [f"- {'⚠ ' if tone == 'bad' else ''}{_md(text)}" for tone, text in what_changed(c)]
    out.append("")
    if c.regressions:
        out += ["## Regressions", ""] + [f"- {_md(r)}" for r in c.regressions] + [""]
    for title, header, rows, empty in sections(c):
        out += [f"## {title}", ""]
        if not rows:
            out += [empty, ""]
            continue
        out.append("| " + " | ".join(header) + " |")
        out.append("|" + "---|" * len(header))
        out += ["| " + " | ".join(_md(x) for x in row) + " |" for row in rows]
        out.append("")
    if c.matching is not None:
        out += [_matching_line(c.matching), ""]
    representation = _representation_line(c)
    if representation is not None:
        out += [representation, ""]
    if c.notes:
        out += ["## Notes", ""] + [f"- {_md(n)}" for n in c.notes] + [""]
    return "\n".join(out).rstrip() + "\n"


# --------------------------------------------------------------------------- HTML
_CSS = """
:root { --fail: #cf222e; --fail-bg: #ffebe9; --pass: #1a7f37; --pass-bg: #dafbe1; --warn: #9a6700; --warn-bg: #fff8c5;
  --line: #d1d9e0; --muted: #59636e; }
body { font: 14px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0; color: #1f2328; background: #f6f8fa; }
main { max-width: 1100px; margin: 0 auto; padding: 18px 24px 40px; }
h1 { font-size: 20px; margin: 0 0 14px; } h2 { font-size: 17px; margin: 22px 0 6px; }
code { background: #eef1f4; padding: 0 .25em; border-radius: 3px; }
.verdict { border: 2px solid var(--line); border-radius: 8px; padding: 14px 18px; background: #fff; }
.verdict .title { font-size: 22px; font-weight: 800; letter-spacing: .3px; display: block; }
.verdict .detail { color: var(--muted); }
.verdict.regression { border-color: var(--fail); } .verdict.regression .title { color: var(--fail); }
.verdict.still-failing { border-color: var(--warn); background: #fffdf3; } .verdict.still-failing .title { color: var(--warn); }
.verdict.no-regression { border-color: var(--pass); } .verdict.no-regression .title { color: var(--pass); }
ul.changed { list-style: none; padding: 0; margin: 10px 0 0; }
ul.changed li { padding: 3px 10px; margin: 3px 0; border-left: 4px solid var(--line); }
ul.changed li.bad { border-color: var(--fail); background: var(--fail-bg); }
ul.changed li.warn { border-color: var(--warn); background: var(--warn-bg); }
ul.changed li.good { border-color: var(--pass); background: var(--pass-bg); }
table { border-collapse: collapse; width: 100%; background: #fff; margin: 4px 0 6px; font-size: 13px; }
th, td { border-bottom: 1px solid #eaeef2; padding: 4px 8px; text-align: left; vertical-align: top; }
th { color: var(--muted); border-bottom: 2px solid var(--line); }
tr.bad td { background: #fff6f5; } td.bad { color: var(--fail); font-weight: 600; }
td.warn { color: var(--warn); font-weight: 600; } td.good { color: var(--pass); font-weight: 600; }
td.s-fail, td.s-error { color: var(--fail); font-weight: 600; } td.s-pass { color: var(--pass); }
details > summary { cursor: pointer; color: #0969da; font-size: 13px; }
.empty, .note { color: var(--muted); }
p.test-data { margin: 10px 0 0; padding: 6px 12px; border-left: 4px solid var(--line); background: #fff; }
p.test-data.warn { border-color: var(--warn); background: var(--warn-bg); }
p.test-data.good { border-color: var(--pass); }
"""


def _cell_class(header: str, value: str) -> str:
    if header in ("A", "B"):
        return f"s-{value}" if value in ("pass", "fail", "error") else ""
    if header == "change":
        word = value.removeprefix("⚠ ").split(" ")[0]
        if value.startswith("⚠"):
            return "bad"
        return "good" if word in _GOOD_CHANGES else "warn" if word in _STILL_BAD else ""
    return ""


def _table(header: list[str], rows: list[list[str]]) -> str:
    e = html.escape

    def body(part: list[list[str]]) -> str:
        out = []
        for row in part:
            flag = ' class="bad"' if any(str(x).startswith("⚠") for x in row) else ""
            cells = "".join(f'<td class="{cls}">{e(str(x))}</td>' if (cls := _cell_class(h, str(x)))
                            else f"<td>{e(str(x))}</td>" for h, x in zip(header, row))
            out.append(f"<tr{flag}>{cells}</tr>")
        return "".join(out)

    head = "<thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr></thead>"
    return paged_table(head, rows, body)


def paged_table(head: str, rows: list, body: Any) -> str:
    """A table of the first :data:`MAX_ROWS` rows, the rest behind a "Show N more rows" fold;
    ``body(rows)`` renders rows as ``<tr>`` elements, ``head`` is the ``<thead>``."""
    page = f"<table>{head}<tbody>{body(rows[:MAX_ROWS])}</tbody></table>"
    if len(rows) > MAX_ROWS:
        rest = len(rows) - MAX_ROWS
        page += (f'<details class="more"><summary>Show {rest} more row{"s" if rest != 1 else ""}</summary>'
                 f"<table>{head}<tbody>{body(rows[MAX_ROWS:])}</tbody></table></details>")
    return page


def to_html(c: "RunComparison") -> str:
    """A self-contained HTML page (no external resources, no script; every value escaped)."""
    e = html.escape
    v = verdict(c)
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>sparsecheck compare {e(c.run_a)} → {e(c.run_b)}</title>",
        f"<style>{_CSS}</style></head><body><main>",
        f"<h1>sparsecheck compare: <code>{e(c.run_a)}</code> → <code>{e(c.run_b)}</code></h1>",
        *([f'<ul class="models" id="models">{"".join(f"<li>{e(line)}</li>" for line in model_lines(c))}</ul>']
          if model_lines(c) else []),
        f'<div class="verdict {v["kind"]}" id="verdict" data-kind="{v["kind"]}">'
        f'<span class="title">{e(v["title"])}</span><span class="detail">{e(v["detail"])}</span>',
        '<ul class="changed" id="what-changed">'
        + "".join(f'<li class="{tone}">{e(text)}</li>' for tone, text in what_changed(c)) + "</ul></div>",
    ]
    data_line = _test_data_line(c)
    if data_line is not None:
        parts.append(f'<p class="test-data {data_line[0]}" id="test-data">{e(data_line[1])}</p>')
    if c.regressions:
        parts.append('<h2>Regressions</h2><ul id="regressions">')
        parts += [f"<li>{e(r)}</li>" for r in c.regressions]
        parts.append("</ul>")
    for title, header, rows, empty in sections(c):
        anchor = title.lower().replace(" ", "-")
        parts.append(f'<h2 id="{e(anchor)}">{e(title)}</h2>')
        parts.append(_table(header, rows) if rows else f'<p class="empty">{e(empty)}</p>')
    if c.matching is not None:
        parts.append(f'<p class="note">{e(_matching_line(c.matching))}</p>')
    representation = _representation_line(c)
    if representation is not None:
        parts.append(f'<p class="note" id="representation">{e(representation)}</p>')
    if c.notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{e(n)}</li>" for n in c.notes) + "</ul>")
    parts.append("</main></body></html>")
    return "\n".join(parts) + "\n"
