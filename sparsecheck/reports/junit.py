"""JUnit XML for CI systems: one testsuite, one testcase per assertion.

What CI systems show (Jenkins, GitLab, Azure DevOps, GitHub test-report actions): a test's name,
its class name (used for grouping), pass/fail/error, and for a failure its ``message`` attribute as
the headline and the element's text as the details. So:

* a failing assertion is a ``<failure>`` whose ``message`` is the assertion's one-line message,
  prefixed with its severity, and whose text lists observed value, threshold, scope and the worst
  failing examples;
* a failing *warning* is also a ``<failure>`` (CI tools have no "warning" state, and hiding it as
  skipped would bury it) but with ``type="warning"`` and a ``[warning]`` prefix, so the report
  shows it while the exit code, not the XML, decides whether the build fails;
* an assertion that raised is an ``<error>`` with the exception as message and the traceback as text;
* passing assertions carry their observed value in ``<system-out>``.

The ``tests``/``failures``/``errors``/``skipped``/``time`` counts are on both ``<testsuites>`` and
``<testsuite>``.

Examples
--------
>>> from sparsecheck.assertions import AssertionResult, SuiteResult
>>> xml = junit_xml(SuiteResult([AssertionResult(name="acc", status="fail", message="accuracy 0.61 < 0.80")]))
>>> import xml.etree.ElementTree as ET
>>> suite = ET.fromstring(xml).find("testsuite")
>>> suite.get("tests"), suite.get("failures"), suite.find("testcase/failure").get("message")
('1', '1', '[error] accuracy 0.61 < 0.80')
"""

from __future__ import annotations

import datetime as _dt
import re
import socket
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Iterable

from sparsecheck.outputs import atomic_write
from sparsecheck.reports import format as fmt
from sparsecheck.results import AssertionResult, RunResults, gate_status

__all__ = ["junit_xml", "write_junit"]

_INVALID_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
#: failing examples listed in a testcase's failure text
EXAMPLES_IN_XML = 20


def _clean(text: Any) -> str:
    return _INVALID_XML.sub("?", "" if text is None else str(text))


def _results(results: Any) -> list[AssertionResult]:
    """The assertion results of a RunResults, a SuiteResult, or a list of results or their records."""
    items: Iterable[Any] = (results.assertions if isinstance(results, RunResults)
                            else getattr(results, "results", results))
    return [r if isinstance(r, AssertionResult) else AssertionResult.from_dict(r) for r in items]


def _details(r: AssertionResult) -> str:
    lines = [f"severity: {r.severity}", f"observed: {fmt.value(r.observed)}", f"threshold: {fmt.value(r.threshold)}"]
    if r.scope:
        lines.append(f"scope: {r.scope}")
    lines.append(f"message: {r.message}")
    examples = r.failing_examples.head(EXAMPLES_IN_XML).to_dict("records")
    if examples:
        n = r.n_failing or len(r.failing_examples)
        lines.append(f"failing examples (worst {len(examples)} of {n}):")
        for ex in examples:
            extra = ", ".join(f"{k}={fmt.value(v)}" for k, v in ex.items() if k not in ("id", "severity"))
            lines.append(f"  {ex.get('id')}  severity {fmt.value(ex.get('severity'))}"
                         + (f"  ({extra})" if extra else ""))
    return "\n".join(lines)


def junit_xml(results: Any, *, suite_name: str = "sparsecheck", timestamp: str | None = None) -> str:
    """JUnit XML text for a :class:`~sparsecheck.results.RunResults` (its assertions), a SuiteResult,
    or a list of :class:`~sparsecheck.results.AssertionResult` (or of their records, as results.json
    holds them)."""
    records = _results(results)
    n_fail = sum(r.status == "fail" for r in records)
    n_err = sum(r.status == "error" for r in records)
    total_time = sum(r.seconds for r in records)
    counts = {"tests": str(len(records)), "failures": str(n_fail), "errors": str(n_err), "skipped": "0",
              "time": f"{total_time:.3f}"}
    root = ET.Element("testsuites", {"name": suite_name, **counts})
    stamp = timestamp or _dt.datetime.now(_dt.timezone.utc).replace(tzinfo=None).isoformat(timespec="seconds")
    suite = ET.SubElement(root, "testsuite", {"name": suite_name, **counts, "timestamp": stamp,
                                              "hostname": _clean(socket.gethostname())})
    props = ET.SubElement(suite, "properties")
    gate = gate_status(records)
    ET.SubElement(props, "property", {"name": "status", "value": gate})
    for r in records:
        case = ET.SubElement(suite, "testcase", {
            "name": _clean(r.name), "classname": f"{suite_name}.{_clean(r.family or 'custom')}",
            "time": f"{r.seconds:.3f}"})
        if r.status == "fail":
            el = ET.SubElement(case, "failure", {"message": _clean(f"[{r.severity}] {r.message}"),
                                                 "type": "warning" if r.severity == "warning" else "error"})
            el.text = _clean(_details(r))
        elif r.status == "error":
            kind = r.message.split(":", 1)[0] or "Exception"
            el = ET.SubElement(case, "error", {"message": _clean(f"[{r.severity}] {r.message}"), "type": _clean(kind)})
            el.text = _clean(r.error or r.message)
        else:
            out = ET.SubElement(case, "system-out")
            out.text = _clean(_details(r))
    ET.indent(root, space="  ")
    return ET.tostring(root, encoding="unicode", xml_declaration=False)


def write_junit(results: Any, path: str | Path, *, suite_name: str = "sparsecheck") -> Path:
    """Write :func:`junit_xml` to ``path`` atomically (UTF-8, with an XML declaration)."""
    path = Path(path)
    text = '<?xml version="1.0" encoding="UTF-8"?>\n' + junit_xml(results, suite_name=suite_name) + "\n"
    with atomic_write(path, "w", encoding="utf-8") as fh:
        fh.write(text)
    return path
