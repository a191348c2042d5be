"""junit.xml read the way CI systems read it (xml.etree): one testsuite, a testcase per assertion,
failures carrying the message, counts that match."""

from __future__ import annotations

import xml.etree.ElementTree as ET


from sparsecheck.assertions import Assertion, run_assertions
from sparsecheck.reports.junit import junit_xml, write_junit
from tests.assertions._data import planted_table


def boom(data):
    raise RuntimeError("bad <input> & \x01 control")


def suite():
    table = planted_table(n=600)
    return run_assertions([
        Assertion.accuracy(min=0.5, name="accuracy-ok"),
        Assertion.accuracy(by=["group"], max_drop=0.1, name="accuracy-by-slice"),
        Assertion.ece(max=0.0001, name="calibration", severity="warning"),
        Assertion.custom(boom, name="crashes"),
    ], table)


def test_junit_parses_with_one_suite_and_a_case_per_assertion(tmp_path):
    result = suite()
    path = write_junit(result, tmp_path / "junit.xml")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junit.xml"]  # no temp file left behind
    root = ET.parse(path).getroot()
    suites = root.findall("testsuite") if root.tag == "testsuites" else [root]
    assert len(suites) == 1
    ts = suites[0]
    cases = ts.findall("testcase")
    assert [c.get("name") for c in cases] == [r.name for r in result]
    failures = [c for c in cases if c.find("failure") is not None]
    errors = [c for c in cases if c.find("error") is not None]
    for el in (ts, root):
        assert int(el.get("tests")) == len(cases) == 4
        assert int(el.get("failures")) == len(failures) == 2
        assert int(el.get("errors")) == len(errors) == 1
        assert int(el.get("skipped")) == 0
    assert float(ts.get("time")) >= 0


def test_failures_carry_the_message_and_severity(tmp_path):
    result = suite()
    root = ET.fromstring(junit_xml(result))
    cases = {c.get("name"): c for c in root.iter("testcase")}
    slice_fail = cases["accuracy-by-slice"].find("failure")
    assert slice_fail.get("message") == "[error] " + result["accuracy-by-slice"].message
    assert slice_fail.get("type") == "error"
    assert "group=g2" in slice_fail.get("message")
    assert "failing examples (worst 20 of" in slice_fail.text and "observed:" in slice_fail.text
    warn = cases["calibration"].find("failure")
    assert warn.get("type") == "warning" and warn.get("message").startswith("[warning] ")
    err = cases["crashes"].find("error")
    assert err.get("type") == "RuntimeError" and "bad <input> &" in err.get("message")
    assert "Traceback" in err.text
    ok = cases["accuracy-ok"]
    assert ok.find("failure") is None and ok.find("error") is None and "observed:" in ok.find("system-out").text
    assert cases["accuracy-ok"].get("classname") == "sparsecheck.metric"
    props = {p.get("name"): p.get("value") for p in root.iter("property")}
    assert props["status"] == "fail"


def test_junit_from_results_json_records():
    records = suite().to_dicts()
    root = ET.fromstring(junit_xml(records))
    assert root.find("testsuite").get("tests") == "4"
    empty = ET.fromstring(junit_xml([]))
    assert empty.find("testsuite").get("tests") == "0"
    assert {p.get("value") for p in empty.iter("property")} == {"pass"}


def test_junit_reads_a_runs_typed_results():
    from sparsecheck.results import RunResults

    records = [r.to_dict() for r in suite()]
    typed = RunResults.from_dict({"status": "fail", "assertions": records})
    assert junit_xml(typed, timestamp="2026-01-01T00:00:00") == junit_xml(records, timestamp="2026-01-01T00:00:00")
