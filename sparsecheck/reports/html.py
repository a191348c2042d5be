"""The HTML report: one self-contained ``report.html`` that reads as an investigation.

Verdict first, then *why*: each failing assertion with the features and examples it names, and
each spurious finding with its evidence inline — the feature's top examples and LIME overlay at
their natural size (with a legend), the association, outcome and intervention numbers in words
and as a small bar chart, and a link to the feature's full card. Then the sparse decision layer
(regularisation path, dense vs sparse accuracy, features per class), the features — a full card
with pictures for every feature a finding, a failing assertion or a top feature slice names
(:func:`sparsecheck.reports.evidence.featured_features`) or whose LIME explanation was
sanity-checked, plus the heaviest features up to ``max_cards``; the others in a compact table — accuracy by metadata attribute, the discovered
slices with their confidence intervals, every assertion, and the run's metadata with its MLflow
link.

The file has no external dependencies: images are inlined as base64 ``data:`` URIs, charts are
inline SVG, the CSS is embedded and there is no JavaScript, so it opens offline, from an MLflow
artifact view or as a CI attachment. Every section renders (with a short note) when its data is
missing or empty; tables longer than ``max_rows`` show the rest one click away. All text from
results, configs and metadata is HTML-escaped (jinja2 autoescape).

Examples
--------
>>> html = render_report({"status": "fail", "assertions": [
...     {"name": "no <corner> cue", "status": "fail", "severity": "error", "message": "relies on it"}]})
>>> "FAIL" in html, "no &lt;corner&gt; cue" in html, "<corner>" in html
(True, True, False)
"""

from __future__ import annotations

import base64
import json
import logging
import math
import mimetypes
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2

from sparsecheck.outputs import atomic_write
from sparsecheck._version import __version__
from sparsecheck.analysis.feature_modes import is_feature_mode
from sparsecheck.defaults import ANALYSIS
from sparsecheck.errors import ConfigError, ParameterError
from sparsecheck.modalities import get_modality
from sparsecheck.reports import format as fmt
from sparsecheck.reports.evidence import (assertion_features, featured_features, finding_evidence, finite_number,
                                          fmt_weight)
from sparsecheck.results import RunResults, is_failing, results_mapping

if TYPE_CHECKING:  # pragma: no cover
    from sparsecheck.pipeline.context import RunContext

logger = logging.getLogger(__name__)

__all__ = ["render_report", "write_report", "REPORT_FILE"]

REPORT_FILE = "report.html"
PATH_PLOT_FILE = "sparse_path.png"
TEMPLATE = "report.html.j2"
#: images larger than this are not inlined (the report would become unwieldy)
MAX_IMAGE_BYTES = 4 * 1024 * 1024
_IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
                ".webp": "image/webp", ".svg": "image/svg+xml"}


# --------------------------------------------------------------------------- formatting filters


def _finite(x: Any) -> float | None:
    """A finite float, or None (also for a template's undefined value)."""
    return None if isinstance(x, jinja2.Undefined) else finite_number(x)


def _defined(format_: Any) -> Any:
    """A :mod:`~sparsecheck.reports.format` function as a template filter: a template's undefined
    value is missing."""
    return lambda x, *args, **kwargs: format_(None if isinstance(x, jinja2.Undefined) else x, *args, **kwargs)


def _fmt_num(x: Any, digits: int = 3) -> str:
    """Numbers as :func:`~sparsecheck.reports.format.number` writes them; other values as short
    text (lists and dicts as JSON); a template's undefined value as missing."""
    if x is None or isinstance(x, jinja2.Undefined):
        return fmt.MISSING
    if isinstance(x, (bool, int, float)) or _finite(x) is not None:
        return fmt.number(x, digits)
    if isinstance(x, (Mapping, list, tuple)):
        return fmt.truncate(json.dumps(x, default=str, ensure_ascii=False))
    return str(x)


def _clip01(x: Any) -> float | None:
    v = _finite(x)
    return None if v is None else min(1.0, max(0.0, v))


# --------------------------------------------------------------------------- images


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _inline_image(rel: Any, out_dir: Path | None) -> str | None:
    """``data:`` URI of an image under ``out_dir``; None when missing, too big or outside it."""
    if not isinstance(rel, (str, Path)) or not str(rel) or out_dir is None:
        return None
    root = out_dir.resolve()
    path = (root / rel).resolve()
    if not path.is_relative_to(root):
        logger.warning("report: image %s lies outside the output directory; not inlined", rel)
        return None
    mime = _IMAGE_TYPES.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0]
    if mime is None or not mime.startswith("image/"):
        return None
    try:
        size = path.stat().st_size
        if size > MAX_IMAGE_BYTES:
            logger.warning("report: image %s is %d bytes; not inlined", rel, size)
            return None
        return _data_uri(path.read_bytes(), mime)
    except OSError:
        logger.warning("report: image %s is missing; the report shows a placeholder", rel)
        return None


# --------------------------------------------------------------------------- the view model


def _as_dict(item: Any) -> dict[str, Any]:
    if isinstance(item, Mapping):
        return dict(item)
    to_dict = getattr(item, "to_dict", None)
    return dict(to_dict()) if callable(to_dict) else {}


def _rows(value: Any) -> list[dict[str, Any]]:
    if value is None:
        return []
    if hasattr(value, "to_dict") and hasattr(value, "columns"):  # a DataFrame
        return [dict(r) for r in value.to_dict("records")]
    if isinstance(value, Mapping) or isinstance(value, (str, bytes)):
        return []
    return [d for d in (_as_dict(v) for v in value) if d]


def _is_failing(a: Mapping[str, Any], severity: str) -> bool:
    """Fails the gate at exactly this severity (the gate rule: :mod:`sparsecheck.results`)."""
    return is_failing(a, severity) and (a.get("severity") or "error") == severity  # type: ignore[arg-type]


def _path_svg(path: list[dict[str, Any]], selected: Any) -> dict[str, Any] | None:
    """Coordinates of a regularisation-path chart (log lambda vs accuracy and nonzero weights)."""
    points = [(float(p["lambda"]), _finite(p.get("val_accuracy")), _finite(p.get("nnz")))
              for p in path if _finite(p.get("lambda")) and float(p["lambda"]) > 0]
    if len(points) < 2:
        return None
    w, h, pad = 640.0, 240.0, 40.0
    xs = [math.log10(p[0]) for p in points]
    x0, x1 = min(xs), max(xs)
    span = (x1 - x0) or 1.0

    def sx(x: float) -> float:  # large lambda (sparse) on the left, like the paper's plots
        return round(pad + (x1 - x) / span * (w - 2 * pad), 1)

    accs = [p[1] for p in points if p[1] is not None]
    nnzs = [p[2] for p in points if p[2] is not None]
    a0, a1 = (min(accs), max(accs)) if accs else (0.0, 1.0)
    n1 = max(nnzs) if nnzs else 1.0

    def sy(v: float, lo: float, hi: float) -> float:
        return round(h - pad - (v - lo) / ((hi - lo) or 1.0) * (h - 2 * pad), 1)

    acc_line = " ".join(f"{sx(x)},{sy(p[1], a0, a1)}" for x, p in zip(xs, points) if p[1] is not None)
    nnz_line = " ".join(f"{sx(x)},{sy(p[2], 0.0, n1)}" for x, p in zip(xs, points) if p[2] is not None)
    sel = None
    if isinstance(selected, int) and 0 <= selected < len(points) and points[selected][1] is not None:
        sel = {"x": sx(xs[selected]), "y": sy(points[selected][1], a0, a1)}
    return {"w": w, "h": h, "pad": pad, "acc": acc_line, "nnz": nnz_line, "sel": sel,
            "acc_lo": a0, "acc_hi": a1, "nnz_hi": n1, "lam_hi": 10 ** x1, "lam_lo": 10 ** x0}


def _card(raw: Mapping[str, Any], out_dir: Path | None, with_images: bool, fdr: float,
          reasons: list[str] | None = None) -> dict[str, Any]:
    card = dict(raw)
    card["reasons"] = list(reasons or [])
    card["thumb"] = _finite(raw.get("thumb"))
    card["classes"] = _rows(raw.get("classes"))
    assoc = sorted(_rows(raw.get("associations")),
                   key=lambda a: (_finite(a.get("q_value")) if _finite(a.get("q_value")) is not None else 2.0,
                                  -abs(_finite(a.get("effect")) or 0.0)))
    card["associations"] = assoc[:5]
    card["n_associations"] = len(assoc)
    card["significant"] = [a for a in assoc if (_finite(a.get("q_value")) or 1.0) <= fdr]
    sanity = raw.get("sanity") if isinstance(raw.get("sanity"), Mapping) else None
    card["sanity"] = sanity
    card["trustworthy"] = None if sanity is None or sanity.get("trustworthy") is None else bool(sanity["trustworthy"])
    for key in ("top_examples", "bottom_examples"):
        ids = raw.get(key) or []
        card[key] = [str(i) for i in ids] if isinstance(ids, (list, tuple)) else []
    card["image_uri"] = _inline_image(raw.get("image"), out_dir) if with_images else None
    lime = raw.get("lime") if isinstance(raw.get("lime"), Mapping) else None
    card["lime_items"], card["lime_images"] = [], []
    if lime:
        for key, value in lime.items():
            if isinstance(value, str) and Path(value).suffix.lower() in _IMAGE_TYPES:
                if with_images and len(card["lime_images"]) < 4:
                    uri = _inline_image(value, out_dir)
                    if uri:
                        card["lime_images"].append({"label": key, "uri": uri})
            else:
                card["lime_items"].append((key, value))
    card["has_lime"] = lime is not None
    card["words"] = raw.get("words") if isinstance(raw.get("words"), Mapping) else None
    card["weight"] = sum(abs(_finite(c.get("weight")) or 0.0) for c in card["classes"])
    return card


def _finding(raw: Mapping[str, Any], cards: Mapping[int, dict[str, Any]], out_dir: Path | None, *,
             noun: str = "image") -> dict[str, Any]:
    """A spurious finding with its evidence in words and chart rows, its feature's card and the
    picture of its cue (when the cue was learned from the examples)."""
    finding = dict(raw)
    finding.update(finding_evidence(raw))
    feature = _finite(raw.get("feature"))
    finding["card"] = cards.get(int(feature)) if feature is not None else None
    evidence = raw.get("evidence") if isinstance(raw.get("evidence"), Mapping) else {}
    weight = _finite(evidence.get("weight"))
    iv = evidence.get("intervention") if isinstance(evidence.get("intervention"), Mapping) else {}
    cue = iv.get("cue_estimate") if isinstance(iv.get("cue_estimate"), Mapping) else {}
    fires = f", which fires on {raw.get('attribute')} = {raw.get('value')}"
    if is_feature_mode(str(raw.get("attribute"))):  # its own high mode: what those images share is the cue
        fires = (f", which fires in two modes; the {noun}s of its high mode share a cue"
                 + (f": {cue['description']}" if cue.get("description") else ""))
    finding["headline"] = (f"Class {raw.get('class')} relies on feature {raw.get('feature')}"
                           + (f" (weight {weight:.2f})" if weight is not None else "") + fires
                           + (f" (an automatic {noun} attribute; confirmed by intervention)" if raw.get("automatic")
                              else ""))
    finding["kind"] = "automatic" if raw.get("automatic") else "declared"
    finding["cue_uri"] = _inline_image(cue.get("image"), out_dir)
    finding["cue_text"] = cue.get("description")
    finding["cue_learned"] = bool(cue.get("description"))  # else given in data.interventions
    return finding


def _failing(raw: Mapping[str, Any], cards: Mapping[int, dict[str, Any]], findings: list[dict[str, Any]],
             max_examples: int = 5) -> dict[str, Any]:
    """A failing assertion with the features it names (their cards) and its first failing examples."""
    a = dict(raw)
    in_findings = {int(f["feature"]) for f in findings if _finite(f.get("feature")) is not None}
    a["features"] = [{"feature": f, "card": cards.get(f), "in_finding": f in in_findings}
                     for f in assertion_features(raw)]
    examples = [e for e in raw.get("failing_examples") or [] if isinstance(e, Mapping)]
    columns = list(dict.fromkeys(k for e in examples[:max_examples] for k in e))[:7]
    a["examples"] = {"columns": columns, "rows": [[e.get(c) for c in columns] for e in examples[:max_examples]],
                     "n": int(_finite(raw.get("n_failing")) or len(examples))}
    return a


def _view(results: Mapping[str, Any], out_dir: Path | None, path_png: bytes | None, *, max_cards: int,
          max_rows: int, fdr: float) -> dict[str, Any]:
    status = str(results.get("status") or "unknown").lower()
    assertions = _rows(results.get("assertions"))
    order = {"error": 0, "fail": 1, "pass": 3}
    assertions_sorted = sorted(assertions, key=lambda a: order.get(str(a.get("status")), 2))
    failing = [a for a in assertions if _is_failing(a, "error")]
    warnings_ = [a for a in assertions if _is_failing(a, "warning")]

    dense = results.get("dense") if isinstance(results.get("dense"), Mapping) else {}
    layer = results.get("sparse_layer") if isinstance(results.get("sparse_layer"), Mapping) else None
    dense_acc = _finite((layer or {}).get("dense_accuracy"))
    if dense_acc is None:
        dense_acc = _finite(dense.get("test_accuracy"))
    sparse: dict[str, Any] | None = None
    if layer is not None:
        per_class = layer.get("features_per_class") or {}
        classes = [{"name": str(name), "features": _rows(feats)} for name, feats in per_class.items()] \
            if isinstance(per_class, Mapping) else []
        svg = None if path_png else _path_svg(_rows(layer.get("path")), layer.get("selected_index"))
        # the PNG (SparseDecisionLayer.plot_path) has lambda growing to the right; the SVG, like the
        # paper's plots, puts large lambda (strong regularisation, few weights) on the left
        sparse = {**layer, "dense_accuracy": dense_acc, "classes": classes, "strong_left": svg is not None,
                  "path_png": _data_uri(path_png, "image/png") if path_png else None, "path_svg": svg}

    # full cards: every feature a finding, a failing assertion or a top slice names, then the
    # heaviest features up to max_cards; the rest in a compact table
    featured = featured_features(results)
    cards_raw = [c for c in _rows(results.get("feature_cards")) if _finite(c.get("feature")) is not None]
    by_id = {int(c["feature"]): c for c in cards_raw}
    weight = {f: sum(abs(_finite(k.get("weight")) or 0.0) for k in _rows(c.get("classes"))) for f, c in by_id.items()}
    full_ids = [f for f in featured if f in by_id]
    # a sanity-checked feature's trust verdict is evidence too (there are few: analysis.sanity_features)
    checked = [f for f in sorted(by_id, key=lambda f: -weight[f])
               if isinstance(by_id[f].get("sanity"), Mapping) and f not in full_ids]
    for f in checked:
        featured.setdefault(f, []).append("LIME sanity-checked")
    full_ids += checked
    for f in sorted(by_id, key=lambda f: -weight[f]):
        if len(full_ids) >= max_cards:
            break
        if f not in full_ids:
            full_ids.append(f)
    full = {f: _card(by_id[f], out_dir, True, fdr, featured.get(f) or ["among the heaviest features"])
            for f in full_ids}
    rest = [_card(c, out_dir, False, fdr) for c in sorted(cards_raw, key=lambda c: -weight[int(c["feature"])])
            if int(c["feature"]) not in full]
    # declared attributes' findings first, then those found from the pixels (automatic attributes)
    findings = [_finding(f, full, out_dir, noun=_modality_words(results.get("modality"))["noun"]) for f in
                _rows(results.get("spurious_findings")) + _rows(results.get("automatic_findings"))]
    failing_view = [_failing(a, full, findings) for a in failing + warnings_]
    uncarded = [f for f in featured if f not in by_id]
    table = results.get("feature_attributes_table")
    # a link beside the report (both sit in --out and among the MLflow run's artifacts), nothing else
    table_link = (dict(table) if isinstance(table, Mapping) and isinstance(table.get("path"), str)
                  and ":" not in table["path"] and not table["path"].startswith(("/", "\\"))
                  and ".." not in Path(table["path"]).parts else None)

    acc_rows = _rows(results.get("accuracy_by_attribute"))
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in acc_rows:
        groups.setdefault(str(row.get("attribute")), []).append(row)

    slices = _rows(results.get("slices"))
    for s in slices:
        preds = s.get("predicates")
        s["label"] = " ∧ ".join(f"{k} = {v}" for k, v in preds.items()) if isinstance(preds, Mapping) \
            else _fmt_num(preds)

    model = results.get("model") if isinstance(results.get("model"), Mapping) else {}
    data = results.get("data") if isinstance(results.get("data"), Mapping) else {}
    mlflow = results.get("mlflow") if isinstance(results.get("mlflow"), Mapping) else None
    sparse_model = results.get("sparse_model") if isinstance(results.get("sparse_model"), Mapping) else {}
    mlflow_model = results.get("mlflow_model") if isinstance(results.get("mlflow_model"), Mapping) else None
    timings = results.get("timings") if isinstance(results.get("timings"), Mapping) else {}
    model_name = Path(str(model.get("source"))).name if model.get("source") else None
    if mlflow_model and mlflow_model.get("name") and mlflow_model.get("version"):
        model_name = (f"{mlflow_model['name']} version {mlflow_model['version']}"
                      + (f" (@{mlflow_model['alias']})" if mlflow_model.get("alias") else ""))
    return {
        "status": status,
        "version": results.get("sparsecheck_version") or __version__,
        "created": results.get("created"),
        "device": results.get("device"),
        "model": model,
        "model_name": model_name,
        "mlflow_model": mlflow_model,
        "data": data,
        "sparse_model": {k: sparse_model.get(k) if isinstance(sparse_model.get(k), Mapping) else None
                         for k in ("classifier", "head", "registered")},
        "features": results.get("features") if isinstance(results.get("features"), Mapping) else {},
        "timings": timings,
        "total_seconds": sum(v for v in (_finite(t) for t in timings.values()) if v is not None),
        "dense": dense,
        "dense_accuracy": dense_acc,
        "chance_rate": _finite(dense.get("test_chance_rate")),
        # the predictions match the labels under another class order (results.dense.class_order)
        "class_order": dense.get("class_order") if isinstance(dense.get("class_order"), Mapping) else None,
        "overall_error": None if dense_acc is None else 1.0 - dense_acc,
        "sparse": sparse,
        "assertions": assertions_sorted,
        "n_assertions": len(assertions),
        "n_passed": sum(a.get("status") == "pass" for a in assertions),
        "failing": failing,
        "warnings": warnings_,
        "cards": list(full.values()),
        "cards_rest": rest,
        "uncarded": uncarded,
        "associations_table": table_link,
        "n_listed_associations": len(_rows(results.get("feature_attributes"))),
        "failing_view": failing_view,
        "acc_groups": groups,
        "n_acc_rows": len(acc_rows),
        "slices": slices,
        "clusters": _rows(results.get("error_clusters")),
        "n_significant_slices": sum(bool(s.get("significant")) for s in slices),
        "spurious": findings,
        "n_declared": sum(f["kind"] == "declared" for f in findings),
        "n_automatic": sum(f["kind"] == "automatic" for f in findings),
        "skipped": _rows(results.get("skipped")),
        "explain": _explain_view(results.get("interpretation")),
        "mlflow": mlflow,
        "max_rows": max_rows,
        "fdr": fdr,
        **_modality_words(results.get("modality")),
    }


def _modality_words(name: Any) -> dict[str, str]:
    """How the report speaks of the run's examples (results.json's ``modality``; images before it was recorded)."""
    try:
        modality = get_modality(str(name) if name else None)
    except ConfigError:  # a run of a modality this install does not know
        return {"noun": "example", "found_from": "the examples"}
    return {"noun": modality.noun, "found_from": modality.found_from}


def _explain_view(interpretation: Any) -> dict[str, Any] | None:
    """Which features LIME explained and why others were not (``results["interpretation"]["explain"]``)."""
    explain = interpretation.get("explain") if isinstance(interpretation, Mapping) else None
    if not isinstance(explain, Mapping):
        return None
    counts = explain.get("not_explained") if isinstance(explain.get("not_explained"), Mapping) else {}
    needed = [n for n in _rows(explain.get("needed"))]
    return {"explained": _finite(explain.get("explained")) or 0, "candidates": _finite(explain.get("candidates")) or 0,
            "budget_s": _finite(explain.get("budget_s")), "limit": explain.get("limit"),
            "not_explained": [(str(k), v) for k, v in counts.items()],
            "needed_missing": [n for n in needed if not n.get("explained")]}


# --------------------------------------------------------------------------- rendering


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("sparsecheck.reports", "templates"),
                             autoescape=True, undefined=jinja2.ChainableUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    env.filters.update(pct=_defined(fmt.percent), num=_fmt_num, pval=_defined(fmt.p_value),
                       signed=_defined(fmt.signed), weight=_defined(fmt_weight),
                       secs=_defined(fmt.seconds), clip01=_clip01, finite=_finite)
    return env


def render_report(results: RunResults | Mapping[str, Any], *, out_dir: str | Path | None = None,
                  path_png: bytes | None = None, max_cards: int = 6, max_rows: int = 25,
                  fdr: float = ANALYSIS["fdr"]) -> str:
    """Render a run's results (the results.json dict) as a self-contained HTML page.

    Parameters
    ----------
    results : RunResults or mapping
        The run's typed results, or what a results.json holds (every key optional).
    out_dir : path, optional
        The run's output directory: feature-card images (``features/feature_<id>.png``) are read
        from it and inlined. Images outside it are never read.
    path_png : bytes, optional
        PNG of the regularisation path (:meth:`SparseDecisionLayer.plot_path`); without it the
        path in ``results["sparse_layer"]["path"]`` is drawn as inline SVG.
    max_cards : int
        Full cards (with images) in all: every feature a finding, a failing assertion or a top
        feature slice names, and every sanity-checked one, gets one whatever this says; the
        heaviest features (total |weight|) fill up to ``max_cards``; the other features are
        listed in a compact table.
    max_rows : int
        Rows shown per table before the rest collapses.
    fdr : float
        q-value at or below which an association is highlighted as significant.

    Returns
    -------
    str
        The HTML document.
    """
    view = _view(results_mapping(results), None if out_dir is None else Path(out_dir), path_png,
                 max_cards=max(0, int(max_cards)), max_rows=max(1, int(max_rows)), fdr=fdr)
    return _environment().get_template(TEMPLATE).render(**view)


def write_report(ctx: "RunContext", path: str | Path | None = None, *, max_cards: int = 6,
                 max_rows: int = 25) -> Path:
    """Write ``report.html`` for a run into its output directory (atomically); return its path.

    The regularisation-path plot is the ``sparse_path.png`` the sparse stage registered in
    ``ctx.artifacts``, else drawn with ``ctx.sparse_layer.plot_path``, else (no layer object, e.g.
    results read back from JSON) inline SVG from ``results["sparse_layer"]["path"]``.

    Parameters
    ----------
    ctx : RunContext
        A run whose ``results`` are complete (``status`` set).
    path : path, optional
        Default ``ctx.out_dir / "report.html"``.
    """
    if path is None:
        if ctx.out_dir is None:
            raise ParameterError("The 'path' parameter of write_report is required when the run has no "
                                 "output directory (ctx.out_dir is None).", parameter="path")
        path = Path(ctx.out_dir) / REPORT_FILE
    path = Path(path)
    out_dir = Path(ctx.out_dir) if ctx.out_dir is not None else path.parent
    png = None
    layer = ctx.sparse_layer
    plotted = ctx.artifacts.get(PATH_PLOT_FILE)  # the sparse stage saves the plot beside the layer
    if layer is not None and plotted and Path(plotted).is_file():
        png = Path(plotted).read_bytes()
    elif layer is not None and hasattr(layer, "plot_path"):
        try:
            with tempfile.TemporaryDirectory(prefix="sparsecheck-report-") as tmp:
                png = Path(layer.plot_path(Path(tmp) / "path.png")).read_bytes()
        except Exception as exc:  # a plot must not sink the report; the SVG fallback draws the path
            logger.warning("report: could not plot the regularisation path (%s); drawing it as SVG", exc)
    fdr = getattr(getattr(ctx.config, "analysis", None), "fdr", ANALYSIS["fdr"])
    html = render_report(ctx.run_results, out_dir=out_dir, path_png=png, max_cards=max_cards, max_rows=max_rows,
                         fdr=fdr)
    with atomic_write(path, "w", encoding="utf-8") as fh:
        fh.write(html)
    ctx.artifacts[REPORT_FILE] = str(path)
    logger.info("report written to %s (%.0f kB)", path, path.stat().st_size / 1024)
    return path
