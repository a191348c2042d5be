"""The HTML report: self-contained, escaped, verdict first and then the evidence, graceful when empty,
capped when big, and checked in a real headless Chromium for what a reader needs (findings above
the feature cards, every finding's feature pictured at a readable size, LIME legend, no console
errors, screenshot)."""

from __future__ import annotations

import io
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sparsecheck.reports.evidence import featured_features, finding_evidence, fmt_weight
from sparsecheck.reports.html import render_report, write_report
from tests.conftest import write_feature_image

SECTIONS = ["verdict", "spurious", "sparse-layer", "features", "accuracy", "slices", "assertions", "run"]
#: a finding's evidence as analysis/spurious.py writes it (the demo's numbers)
EVIDENCE = {"weight": 0.79, "auc": 1.0, "p_value": 3.9e-273, "q_value": 7.7e-271, "n_with": 41, "n_without": 101,
            "recall_with": 0.951, "recall_without": 0.693, "gap": 0.258, "others_accuracy_with": 0.705,
            "others_accuracy_without": 0.819, "others_gap": -0.114, "class_specific_gap": 0.372,
            "sparse_recall_with": 0.951, "sparse_recall_without": 0.396, "ablated_recall_with": 0.878,
            "ablated_recall_without": 0.376, "ablation_drop_with": 0.391, "ablation_drop_without": -0.005,
            "ablation_gap": 0.396}
EVIL = '<script>window.__pwned = 1</script>'


class Tags(HTMLParser):
    """Every start tag with its attributes, plus the text inside each section."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def find(self, tag: str, **attrs: str) -> list[dict[str, str | None]]:
        return [a for t, a in self.tags if t == tag and all(a.get(k) == v for k, v in attrs.items())]


def parse(html: str) -> Tags:
    parser = Tags()
    parser.feed(html)
    return parser


def section(html: str, name: str) -> str:
    """The HTML of one section (from its opening tag to the next section)."""
    start = html.index(f'<section id="{name}"')
    end = html.find("<section id=", start + 1)
    return html[start:end if end > 0 else len(html)]


def sample_results(out: Path, *, n_cards: int = 6, n_slices: int = 5, n_values: int = 3) -> dict[str, Any]:
    """A complete results dict as the stages write it, with feature images under ``out``."""
    rng = np.random.default_rng(0)
    cards = []
    for i in range(n_cards):
        feature = 10 + 7 * i
        write_feature_image(out / "features" / f"feature_{feature}.png", seed=i)
        cards.append({
            "feature": feature,
            "classes": [{"class": "seven" if i % 2 else EVIL, "weight": float(rng.normal())}],
            "image": f"features/feature_{feature}.png",
            "thumb": 64,
            "top_examples": [f"test-{j}" for j in range(12)],
            "bottom_examples": [f"test-{100 + j}" for j in range(3)],
            "associations": [
                {"attribute": "corner_mark", "value": "yes", "effect": 0.97, "q_value": 1e-6},
                {"attribute": "site", "value": "east", "effect": 0.51, "q_value": 0.8},
            ],
            "lime": {"r2": 0.71, "examples": 4} if i == 2 else None,
            "sanity": ({"spearman": 0.93, "trustworthy": False} if i == 1 else
                       {"spearman": 0.12, "trustworthy": True} if i < 3 else None),  # a few are checked
        })
    acc = []
    for attribute in ("background", "site", "annotator"):
        for v in range(n_values):
            a = float(rng.uniform(0.3, 0.95))
            acc.append({"attribute": attribute, "value": f"{attribute}-{v}", "size": int(rng.integers(50, 900)),
                        "accuracy": a, "error_rate": 1 - a, "ci_low": a - 0.04, "ci_high": a + 0.04})
    acc[0]["value"] = '<img src=x onerror="window.__pwned = 2">'
    slices = [{"predicates": {"background": "light", "annotator": f"a{i}"}, "size": 40 + i,
               "error_rate": 0.8 - 0.01 * i, "ci_low": 0.7 - 0.01 * i, "ci_high": 0.88 - 0.01 * i,
               "p_value": 1e-8 * (i + 1), "q_value": 1e-6 * (i + 1), "significant": i < 3} for i in range(n_slices)]
    return {
        "status": "fail",
        "sparsecheck_version": "0.1.0",
        "created": "2026-11-22T17:37:05+00:00",
        "device": "cpu",
        "model": {"source": "/models/digits.pt2", "kind": "export", "fingerprint": "939e54d2524c9593",
                  "feature_layer": "head:input"},
        "data": {"train": {"source": "train.npz", "n": 4000, "image_shape": [32, 32, 3]},
                 "test": {"source": "test.npz", "n": 2000, "image_shape": [32, 32, 3]}},
        "dense": {"train_accuracy": 0.94, "test_accuracy": 0.7855},
        "accuracy_by_attribute": acc,
        "sparse_layer": {
            "dense_accuracy": 0.7855, "sparse_accuracy": 0.743, "sparsity": 98.1, "mean_features_per_class": 2.4,
            "max_features_per_class": 4, "n_used_features": 24, "selected_lambda": 0.089, "selected_index": 3,
            "val_accuracy": 0.857, "solver": "fista",
            "features_per_class": {"seven": [{"feature": 17, "weight": 0.94}, {"feature": 24, "weight": -0.2}],
                                   EVIL: [{"feature": 10, "weight": 1.02}], "nine": []},
            "path": [{"lambda": 0.25 / 2 ** k, "nnz": 3 * k, "val_accuracy": min(0.9, 0.1 + 0.15 * k)}
                     for k in range(10)],
        },
        "feature_cards": cards,
        "spurious_findings": [{"class": "seven", "feature": 17, "attribute": "corner_mark", "value": "yes",
                               "score": 0.97, "evidence": {"auc": 0.97, "acc_with": 0.96, "acc_without": 0.41},
                               "sentence": "Class seven relies on feature 17 (weight 0.94); it fires on "
                                           "corner_mark=yes (AUC 0.97)."}],
        "slices": slices,
        "assertions": [
            {"name": "accuracy at least 0.7", "status": "pass", "severity": "error", "observed": 0.78,
             "threshold": 0.7, "message": "ok"},
            {"name": "seven must not use corner_mark", "status": "fail", "severity": "error", "observed": 0.97,
             "threshold": 0.6, "message": "class seven relies on feature 17"},
            {"name": "crashing check", "status": "error", "severity": "error", "observed": None, "threshold": None,
             "message": "KeyError: 'hospital'"},
            {"name": "few features per class", "status": "fail", "severity": "warning", "observed": 4,
             "threshold": 3, "message": "max 4 features"},
        ],
        "mlflow": {"tracking_uri": "http://127.0.0.1:5000", "experiment_id": "1", "run_id": "abc123",
                   "experiment_name": "demo", "ui_url": "http://127.0.0.1:5000/#/experiments/1/runs/abc123"},
        "timings": {"load": 2.7, "extract": 0.076, "dense": 0.012, "sparse": 12.3},
    }


# --------------------------------------------------------------------------- structure


def test_report_is_self_contained_and_escapes_user_strings(tmp_path: Path) -> None:
    html = render_report(sample_results(tmp_path), out_dir=tmp_path)
    tags = parse(html)
    assert not tags.find("script"), "the report needs no JavaScript"
    assert [a.get("rel") for a in tags.find("link")] == ["icon"]
    assert tags.find("link")[0]["href"].startswith("data:")
    for img in tags.find("img"):
        assert img["src"].startswith("data:image/"), img["src"][:60]
    for tag, attrs in tags.tags:
        for key in ("src", "href"):
            value = attrs.get(key) or ""
            if value.startswith(("http:", "https:", "//")):
                assert tag == "a" and value.startswith("http://127.0.0.1:5000/#/experiments/1/runs/abc123")
    assert "<script>" not in html and not any("onerror" in attrs for _, attrs in tags.tags)
    assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in html
    assert '&lt;img src=x onerror=&#34;window.__pwned = 2&#34;&gt;' in html


def test_verdict_and_failing_assertions_come_first(tmp_path: Path) -> None:
    html = render_report(sample_results(tmp_path), out_dir=tmp_path)
    positions = [html.index(f'<section id="{name}"') for name in SECTIONS]
    assert positions == sorted(positions)
    verdict = section(html, "verdict")
    assert 'data-status="fail"' in verdict and ">FAIL" in verdict
    assert "2 error-severity assertions failed (1 of 4 passed)" in verdict
    for name in ("seven must not use corner_mark", "crashing check", "few features per class"):
        assert name in verdict
    assert "accuracy at least 0.7" not in verdict  # passing assertions are listed further down
    assertions = section(html, "assertions")
    order = [assertions.index(n) for n in ("crashing check", "seven must not use corner_mark", "accuracy at least 0.7")]
    assert order == sorted(order), "failures first"


def test_a_class_order_mix_up_is_named_next_to_the_dense_accuracy(tmp_path: Path) -> None:
    from sparsecheck.analysis.chance import diagnose_class_order

    labels = np.repeat(np.arange(3), 40)
    order = diagnose_class_order(labels, (labels + 1) % 3, ["cat", "dog", EVIL])
    results = sample_results(tmp_path)
    results["dense"].update(test_accuracy=0.0, test_chance_rate=1 / 3, class_order=order.to_dict())
    verdict = section(render_report(results, out_dir=tmp_path), "verdict")
    (p,) = parse(verdict).find("p", id="class-order")
    assert p["class"] == "warnline"
    text = verdict[verdict.index('id="class-order"'):]
    assert "Dense accuracy 0.0%: the model&#39;s outputs look like a different class order" in text
    assert "a matching order would be [&lt;script&gt;window.__pwned = 1&lt;/script&gt;, cat, dog]" in text  # escaped
    assert verdict.index('id="chance-rate"') < verdict.index('id="class-order"') < verdict.index("failing-assertions")
    assert "chance 33.3%" in verdict
    results["dense"].pop("class_order")  # none found: no line
    assert 'id="class-order"' not in render_report(results, out_dir=tmp_path)


def test_sections_show_their_data(tmp_path: Path) -> None:
    html = render_report(sample_results(tmp_path), out_dir=tmp_path, path_png=None)
    sparse = section(html, "sparse-layer")
    assert "<svg class=\"path\"" in sparse, "without a PNG the path is drawn as SVG"
    assert "78.5%" in sparse and "74.3%" in sparse and "4.2 points" in sparse
    assert "#17" in sparse and "+0.94" in sparse and "this class is predicted from the bias alone" in sparse
    cards = section(html, "features")
    assert cards.count("<article class=\"card") == 6  # the finding's feature 17, then the heaviest
    assert cards.count("not trustworthy") == 1 and "card untrusted" in cards
    assert "LIME r2" in cards and "0.71" in cards
    assert "corner_mark = yes" in cards and "significant" in cards
    acc = section(html, "accuracy")
    assert acc.count("<svg class=\"iv") == 9 and "<h3>annotator</h3>" in acc
    slices = section(html, "slices")
    assert "background = light ∧ annotator = a0" in slices and slices.count("badge s-fail") == 3
    spurious = section(html, "spurious")
    assert "Class seven relies on feature 17, which fires on corner_mark = yes" in spurious
    assert "AUC 0.97" in spurious and "acc without" in spurious and "0.41" in spurious  # every measurement, named
    assert 'href="#feature-17"' in spurious and '<img class="feat"' in spurious
    run = section(html, "run")
    assert 'href="http://127.0.0.1:5000/#/experiments/1/runs/abc123"' in run
    assert "939e54d2524c9593" in run and "0.08" in run and "15.1" in run  # timings and their total


def test_the_features_section_links_the_whole_association_table(tmp_path: Path) -> None:
    results = sample_results(tmp_path)
    results["feature_attributes_table"] = {"path": "feature_attributes.parquet", "format": "parquet", "rows": 24576,
                                           "columns": ["feature"], "listed": {"fdr": 0.05, "per_feature": 5, "rows": 2}}
    results["feature_attributes"] = [{"feature": 17, "attribute": "corner_mark", "value": "yes", "effect": 0.97,
                                      "p_value": 1e-9, "q_value": 1e-8}] * 2
    cards = section(render_report(results, out_dir=tmp_path), "features")
    assert '<a href="feature_attributes.parquet" download>feature_attributes.parquet</a>' in cards
    assert "(24576 rows)" in cards and "lists the 2 strongest significant ones (q ≤ 0.05), at most 5 per feature" in cards
    for bad in ("javascript:alert(1)", "../../elsewhere.parquet", "/etc/passwd", "https://example.com/t.parquet"):
        results["feature_attributes_table"]["path"] = bad
        cards = section(render_report(results, out_dir=tmp_path), "features")
        assert 'id="associations-table"' not in cards and bad not in cards
    del results["feature_attributes_table"]  # a results.json from before 1.1: the whole list was inline
    assert 'id="associations-table"' not in section(render_report(results, out_dir=tmp_path), "features")


def test_path_png_is_inlined(tmp_path: Path) -> None:
    png = (tmp_path / "p.png")
    write_feature_image(png, seed=1, tiles=2)
    html = render_report(sample_results(tmp_path), out_dir=tmp_path, path_png=png.read_bytes())
    sparse = section(html, "sparse-layer")
    assert "data:image/png;base64," in sparse and "<svg class=\"path\"" not in sparse


@pytest.mark.parametrize("results", [
    {},
    {"status": "pass", "sparse_layer": None, "feature_cards": [], "accuracy_by_attribute": [], "slices": [],
     "spurious_findings": [], "assertions": [], "mlflow": None, "timings": {}},
    {"status": "pass", "sparse_layer": {"features_per_class": {}, "path": []},
     "feature_cards": [{"feature": 3}], "slices": [{"size": None, "error_rate": float("nan")}],
     "accuracy_by_attribute": [{"attribute": "site"}], "assertions": [{"name": "x", "status": "pass"}],
     "spurious_findings": [{"feature": 1}], "data": {"test": "weird"}, "model": {}, "timings": {"load": None}},
], ids=["nothing", "empty", "sparse-and-odd"])
def test_every_section_renders_when_data_is_missing(results: dict[str, Any]) -> None:
    html = render_report(results)
    for name in SECTIONS:
        assert f'<section id="{name}"' in html
    assert "—" in html or "No " in html
    if not results:
        assert "NO VERDICT" in html and "No sparse layer was fitted" in html
        assert "No assertions were declared" in html and "Not logged to MLflow" in html


def test_big_runs_are_capped_and_collapsed(tmp_path: Path) -> None:
    html = render_report(sample_results(tmp_path, n_cards=40, n_slices=60, n_values=30), out_dir=tmp_path,
                         max_cards=24, max_rows=25)
    cards = section(html, "features")
    shown, _, rest = cards.partition('<h3 id="more-features">')
    assert shown.count('<img class="feat"') == 24
    assert rest.startswith("16 other features, heaviest first") and "data:image" not in rest
    assert rest.count("<tr id=\"feature-") == 16
    slices = section(html, "slices")
    visible, _, hidden = slices.partition('<details class="more">')
    assert visible.count("<tr class=") == 25 and "Show 35 more rows" in hidden
    acc = section(html, "accuracy")
    assert acc.count("Show 5 more rows") == 3  # 30 values per attribute, 25 shown


def test_only_images_inside_the_output_directory_are_inlined(tmp_path: Path) -> None:
    out = tmp_path / "out"
    results = sample_results(out, n_cards=2)
    write_feature_image(tmp_path / "secret.png", seed=5)
    results["feature_cards"][0]["image"] = "../secret.png"
    results["feature_cards"][1]["image"] = "features/missing.png"
    html = render_report(results, out_dir=out)
    cards = section(html, "features")
    assert cards.count("data:image/png") == 0 and cards.count("no image") == 2


def test_write_report_from_a_real_run(run_ctx: Any) -> None:
    run_ctx.run_results.status = "fail"
    path = write_report(run_ctx)
    assert path == Path(run_ctx.out_dir) / "report.html" and run_ctx.artifacts["report.html"] == str(path)
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".report.html")]  # no temp file left
    html = path.read_text(encoding="utf-8")
    sparse = section(html, "sparse-layer")
    assert "data:image/png;base64," in sparse, "the layer's own path plot is inlined"
    layer = run_ctx.sparse_layer
    cards = section(html, "features")
    n_full = min(6, len(layer.used_features()))
    assert cards.count("<article class=\"card") == n_full
    assert cards.count('<img class="feat" src="data:image/png;base64,') == n_full
    for f in layer.used_features():  # every used feature: a full card or a row of the compact table
        assert f'id="feature-{int(f)}"' in cards
    assert "wolf must not use colour" in section(html, "verdict")
    assert "wolf must not use colour" in section(html, "why")


# --------------------------------------------------------------------------- in a real browser


def test_report_in_headless_chromium(browser: Any, tmp_path: Path) -> None:
    from PIL import Image
    from selenium.webdriver.common.by import By

    out = tmp_path / "out"
    report = out / "report.html"
    report.write_text(render_report(sample_results(out, n_cards=30, n_slices=30), out_dir=out), encoding="utf-8")
    browser.set_window_size(1280, 2000)
    browser.get(report.as_uri())
    browser.get_log("browser")  # (drained below after the page settled)

    badge = browser.find_element(By.ID, "verdict-badge")
    assert badge.is_displayed() and badge.text.startswith("FAIL")
    assert badge.location["y"] < browser.find_element(By.ID, "sparse-layer").location["y"]
    failing = browser.find_elements(By.CSS_SELECTOR, "#failing-assertions > li")
    assert [li.text.split()[0] for li in failing] == ["seven", "crashing", "few"]
    for name in SECTIONS:
        assert browser.find_element(By.ID, name).is_displayed()
    untrusted = browser.find_elements(By.CSS_SELECTOR, "article.card.untrusted")
    assert len(untrusted) == 1 and "not trustworthy" in untrusted[0].text
    # every inlined image decoded
    assert browser.execute_script(
        "return Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
    assert browser.execute_script("return document.images.length") >= 7  # 6 full cards + the finding
    # user strings stayed text: neither the <script> nor the onerror handler ran
    assert browser.execute_script("return window.__pwned === undefined")
    # collapsed rows open on click
    more = browser.find_element(By.CSS_SELECTOR, "#slices details.more")
    hidden_row = more.find_elements(By.CSS_SELECTOR, "tbody tr")[0]
    assert not hidden_row.is_displayed()
    more.find_element(By.TAG_NAME, "summary").click()
    assert hidden_row.is_displayed()
    # nothing sticks out sideways at laptop width
    assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth + 1")

    severe = [e for e in browser.get_log("browser") if e.get("level") == "SEVERE"]
    assert not severe, severe

    browser.execute_script("window.scrollTo(0, 0)")
    height = browser.execute_script("return document.body.scrollHeight")
    browser.set_window_size(1280, min(int(height) + 40, 8000))
    png = browser.get_screenshot_as_png()
    (tmp_path / "report.png").write_bytes(png)
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    assert pixels.shape[1] >= 1200 and pixels.shape[0] >= 2000
    assert pixels.std() > 20, "screenshot is blank"
    colours = (pixels[..., 0].astype(np.int64) << 16) | (pixels[..., 1].astype(np.int64) << 8) | pixels[..., 2]
    assert np.count_nonzero(np.bincount(colours.ravel(), minlength=1 << 24)) > 200, "too few colours"
    # the verdict banner is red for a failing run: look for the badge colour near the top
    top = pixels[:400].reshape(-1, 3).astype(int)
    assert ((np.abs(top - [207, 34, 46]).sum(axis=1)) < 30).sum() > 2000


# --------------------------------------------------------------------------- the report as an investigation


def investigation_results(out: Path) -> dict[str, Any]:
    """The sample run with what a real failing run adds: two findings with the pipeline's evidence,
    a failing assertion whose details name features, feature slices, LIME on two cards, a tiny weight."""
    r = sample_results(out, n_cards=12)
    for card in r["feature_cards"]:
        card["lime"] = {"samples": 1000, "examples": 4} if card["feature"] in (17, 59) else None
    r["feature_cards"][3]["classes"] = [{"class": "one", "weight": 0.0031}]  # feature 31: "+0.0031", not "+0.00"
    r["spurious_findings"] = [
        {"class": "seven", "feature": 17, "attribute": "corner_mark", "value": "yes", "score": 0.37,
         "evidence": dict(EVIDENCE), "sentence": "class 'seven' relies on feature 17 ..."},
        {"class": "seven", "feature": 59, "attribute": "corner_mark", "value": "yes", "score": 0.10,
         "evidence": {**EVIDENCE, "weight": 0.26, "ablation_drop_with": 0.097}, "sentence": "..."}]
    r["assertions"][1]["details"] = {"violations": [{"class": "seven", "feature": 17}, {"class": "six", "feature": 66},
                                                    {"class": "one", "feature": 73}]}
    r["feature_slices"] = [{"predicates": {"feat_45": "[0, 1.07)", "feat_52": "[0, 0.85)"}, "significant": True},
                           {"predicates": {"feat_80": "[2.4, 7)"}, "significant": False}]
    return r


def test_featured_features_come_from_findings_failing_assertions_and_top_slices(tmp_path: Path) -> None:
    r = investigation_results(tmp_path)
    featured = featured_features(r)
    assert list(featured) == [17, 59, 66, 73, 45, 52]  # not 80: that slice is not significant
    assert featured[17] == ["finding: seven on corner_mark = yes", "assertion seven must not use corner_mark fails"]
    assert featured[45] == ["slice feat_45 = [0, 1.07) ∧ feat_52 = [0, 0.85)"]
    r["assertions"][1]["status"] = "pass"  # a passing assertion names nothing
    assert 66 not in featured_features(r)
    assert featured_features(r, top_slices=0).keys() == {17, 59}
    assert featured_features({}) == {}


def test_finding_evidence_in_words_and_numbers() -> None:
    ev = finding_evidence({"class": "seven", "feature": 44, "attribute": "corner_mark", "value": "yes",
                           "evidence": EVIDENCE})
    text = " ".join(ev["words"])
    assert "Class seven gives feature 44 a weight of 0.79." in text
    assert "AUC 1.00" in text and "95% of the time with corner_mark = yes and 69% without (n = 41 and 101)" in text
    assert "class-specific advantage of +37 points" in text
    assert "falls by 39 points on examples with corner_mark = yes and stays within a point without" in text
    assert "its recall with corner_mark = yes goes from 95% to 88%" in text
    assert [b["kind"] for b in ev["bars"]] == ["with", "without"] * 4
    assert finding_evidence({"feature": 1})["words"] == [] and finding_evidence({"feature": 1})["bars"] == []
    seen = finding_evidence({"feature": 7, "attribute": "auto:feature_7", "value": "on", "also_seen_as": [
        {"attribute": "auto:sharpness", "value": "high", "agreement": 0.44, "training_tie": 0.39}]})["words"]
    assert seen == ["The same images are marked by auto:sharpness = high (44% agreement; training tie +39 points). "
                    "(Training tie: the share of the class's training images with the value minus the other "
                    "classes' share.)"]
    assert fmt_weight(0.0031) == "+0.0031" and fmt_weight(-0.79) == "-0.79" and fmt_weight(3.9e-5) == "+0.000039"


def test_sparse_path_caption_follows_the_plot(tmp_path: Path) -> None:
    r = sample_results(tmp_path)
    svg = section(render_report(r, out_dir=tmp_path), "sparse-layer")
    assert "from strong regularisation (large λ, few weights; left) to weak (right)" in svg
    png = tmp_path / "p.png"
    write_feature_image(png, seed=1, tiles=2)
    plotted = section(render_report(r, out_dir=tmp_path, path_png=png.read_bytes()), "sparse-layer")
    assert "from weak regularisation (small λ, many weights; left) to strong" in plotted  # plot_path: λ grows right


def test_report_reads_as_an_investigation_in_chromium(browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    out = tmp_path / "out"
    results = investigation_results(out)
    report = out / "report.html"
    report.write_text(render_report(results, out_dir=out), encoding="utf-8")
    browser.set_window_size(1280, 2200)
    browser.get(report.as_uri())

    def y(el: Any) -> float:
        return float(browser.execute_script("return arguments[0].getBoundingClientRect().top + window.scrollY", el))

    def readable(img: Any) -> bool:  # decoded, and each thumbnail drawn at >= 64 px
        return bool(browser.execute_script(
            "const i = arguments[0]; const t = Number(i.dataset.thumb || 0);"
            "return i.complete && i.naturalWidth > 0 && t > 0 && t * i.clientWidth / i.naturalWidth >= 64", img))

    findings = browser.find_elements(By.CSS_SELECTOR, "#spurious article.finding")
    cards = browser.find_elements(By.CSS_SELECTOR, "#features article.card")
    assert len(findings) == 2 and cards
    first_card = min(y(c) for c in cards)
    assert all(y(f) < first_card for f in findings), "findings come before the feature cards"
    assert y(findings[0]) < 1200, "the first finding is near the top of the page"
    assert y(browser.find_element(By.ID, "why")) < first_card
    for finding in findings:
        feature = finding.get_attribute("data-feature")
        img = finding.find_element(By.CSS_SELECTOR, "img.feat")
        assert readable(img), f"finding on feature {feature}: picture missing or too small"
        assert finding.find_element(By.CSS_SELECTOR, "a.full-card").get_attribute("href").endswith(f"#feature-{feature}")
        assert finding.find_elements(By.CSS_SELECTOR, "svg.bars rect.with")
        words = finding.find_element(By.CSS_SELECTOR, "ul.words").text
        assert "AUC 1.00" in words and "Ablation" in words
        card = browser.find_element(By.CSS_SELECTOR, f"article.card#feature-{feature}")  # a full card, not a row
        assert readable(card.find_element(By.CSS_SELECTOR, "img.feat"))
    # LIME pictures carry a legend, in the finding and on the card
    for feature in (17, 59):
        card = browser.find_element(By.CSS_SELECTOR, f"article.card#feature-{feature}")
        assert "raise the feature" in card.find_element(By.CSS_SELECTOR, ".lime-legend").text
    assert len(browser.find_elements(By.CSS_SELECTOR, "#spurious .lime-legend")) == 2
    # every featured feature has a full card with a picture; the others sit in the compact table
    full = {int(c.get_attribute("data-feature")) for c in cards}
    carded = {int(c["feature"]) for c in results["feature_cards"]}
    assert set(featured_features(results)) & carded <= full
    assert {10, 17, 24} <= full  # sanity-checked: their trust verdict is evidence too
    rows = browser.find_elements(By.CSS_SELECTOR, "#features table.rest tr[id^=feature-]")
    assert rows and not ({int(r.get_attribute("id").split("-")[1]) for r in rows} & full)
    # the failing assertion shows the features it names, pictured when no finding shows them
    why = browser.find_element(By.ID, "why-1")
    assert "feature 66" in why.text and "feature 17 — its finding is above" in why.text
    assert all(readable(i) for i in why.find_elements(By.CSS_SELECTOR, "img.feat"))
    body = browser.find_element(By.TAG_NAME, "body").text
    assert "+0.0031" in body and "+0.00 " not in body
    severe = [e for e in browser.get_log("browser") if e.get("level") == "SEVERE"]
    assert not severe, severe
    browser.save_screenshot(str(tmp_path / "investigation.png"))


def test_a_declared_cue_is_not_called_learned() -> None:
    # data.interventions gave the cue: only its picture was drawn, so the words name the given cue
    iv = {"cue": "patch(top-left, 0.22, (255, 140, 0), margin=0.03)", "n_put": 32, "flip_rate": 0.125,
          "flip_ci_low": 0.04, "flip_ci_high": 0.33, "baseline_rate": 0.0, "cue_estimate": {"image": "cues/x.png"}}
    given = " ".join(finding_evidence({"class": "seven", "feature": 44, "attribute": "corner_mark", "value": "yes",
                                       "evidence": {**EVIDENCE, "intervention": iv}})["words"])
    assert "The cue, as given in data.interventions: patch(top-left" in given and "learned" not in given
    learned = {**iv, "cue_estimate": {"image": "cues/x.png", "description": "a region of 4.8% of the image (top-left)"}}
    words = " ".join(finding_evidence({"class": "seven", "feature": 44, "attribute": "corner_mark", "value": "yes",
                                       "evidence": {**EVIDENCE, "intervention": learned}})["words"])
    assert "The cue, learned from the images: a region of 4.8% of the image (top-left)" in words
