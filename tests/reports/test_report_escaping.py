"""A real run whose user strings are payloads: the report shows them as text in headless Chromium,
and no script runs (no alert, no handler)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from sparsecheck.cli import main
from tests.helpers import QUICK_ANALYSIS, write_project

PAYLOADS = {
    "class": "<script>window.__pwned = 'class'; alert(1)</script>",
    "class2": "<img src=x onerror=\"window.__pwned = 'class2'; alert(2)\">",
    "metadata": "<svg onload=\"window.__pwned = 'metadata'; alert(3)\">",
    "file": "t<img src=x onerror=alert(4)>",
    "assertion": "<iframe srcdoc=\"<script>parent.__pwned='assertion'</script>\"></iframe>",
}


def test_payloads_in_class_names_metadata_file_names_and_assertion_names_stay_text(tmp_path: Path, capsys: Any,
                                                                                   browser: Any) -> None:
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    raw = write_project(tmp_path)
    (tmp_path / "test.npz").rename(tmp_path / f"{PAYLOADS['file']}.npz")
    raw["data"]["test"] = f"{PAYLOADS['file']}.npz"
    meta = pd.read_csv(tmp_path / "metadata.csv")
    meta.loc[meta.index % 2 == 0, "colour"] = PAYLOADS["metadata"]
    meta.to_csv(tmp_path / "metadata.csv", index=False)
    raw["data"]["class_names"] = [PAYLOADS["class"], PAYLOADS["class2"], "plain"]
    raw["data"]["spurious_attributes"] = ["colour"]
    raw["analysis"] = dict(QUICK_ANALYSIS)
    raw["assertions"] = [{"name": PAYLOADS["assertion"], "type": "accuracy", "min": 0.99}]  # fails: listed first
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(SystemExit) as exit_:
        main(["run", str(tmp_path / "config.yaml"), "--out", str(tmp_path / "out"), "--device", "cpu"])
    assert exit_.value.code == 1, capsys.readouterr().err
    page = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    for payload in PAYLOADS.values():
        assert payload not in page  # every one escaped somewhere, none raw
    browser.get((tmp_path / "out" / "report.html").as_uri())
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert  # noqa: B018 - no payload opened an alert
    assert browser.execute_script("return window.__pwned === undefined")
    assert browser.execute_script("return document.querySelectorAll('iframe, [onload], [onerror]').length") == 0
    text = browser.find_element(By.TAG_NAME, "body").text
    for key in PAYLOADS:
        assert PAYLOADS[key] in text, key  # shown to the reader, as text
