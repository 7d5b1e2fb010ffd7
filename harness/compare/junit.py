"""JUnit XML for CI: a testcase per gated metric × cell, a <failure> for each regression."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from .result import CeilingCheck, CellResult, Comparison
from .summary import fmt, fmt_diff

_INVALID_XML = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _safe(text: str) -> str:
    """Text XML 1.0 can hold (ElementTree escapes markup; control characters we drop)."""
    return _INVALID_XML.sub("\ufffd", str(text))


def _cell_message(cell: CellResult) -> str:
    t = cell.test
    return (
        f"{cell.metric} {cell.verdict}: base {fmt(t.base)} → candidate {fmt(t.cand)} "
        f"(Δ {fmt_diff(t.diff)}, CI [{fmt_diff(t.ci_low)}, {fmt_diff(t.ci_high)}], "
        f"adjusted p {fmt(cell.p_worse)}, allowed worsening {fmt(cell.tolerance)}, "
        f"{t.n_prompts} prompts, {cell.n_pairs} pairs)"
    )


def _cell_case(suite: ET.Element, cell: CellResult, fail_inconclusive: bool) -> bool:
    case = ET.SubElement(
        suite, "testcase", classname=_safe(f"harness.compare.{cell.metric}"), name=_safe(cell.label), time="0"
    )
    failed = cell.regressed or (fail_inconclusive and cell.verdict == "inconclusive")
    if failed:
        failure = ET.SubElement(case, "failure", message=_safe(_cell_message(cell)), type=cell.verdict)
        failure.text = _safe(_cell_message(cell))
    else:
        ET.SubElement(case, "system-out").text = _safe(_cell_message(cell))
    return failed


def _ceiling_case(suite: ET.Element, check: CeilingCheck) -> bool:
    case = ET.SubElement(
        suite, "testcase", classname=f"harness.compare.{check.name}", name="max error rate", time="0"
    )
    message = f"candidate {check.name} {fmt(check.value)} over {check.rows} rows; limit {fmt(check.limit)}"
    if not check.passed:
        ET.SubElement(case, "failure", message=_safe(message), type="ceiling").text = _safe(message)
    else:
        ET.SubElement(case, "system-out").text = _safe(message)
    return not check.passed


def render_junit(comparison: Comparison) -> str:
    """The JUnit XML document (UTF-8 text with declaration)."""
    root = ET.Element("testsuites", name="harness compare")
    suite = ET.SubElement(
        root, "testsuite", name=_safe(f"harness compare {comparison.base.label} → {comparison.cand.label}")
    )
    props = ET.SubElement(suite, "properties")
    for key, value in (
        ("base_run", comparison.base.run_id),
        ("candidate_run", comparison.cand.run_id),
        ("base_model", comparison.base.model),
        ("candidate_model", comparison.cand.model),
        ("alpha", str(comparison.options.alpha)),
        ("correction", comparison.options.correction),
        *((("base_target", comparison.base.target),) if comparison.base.target is not None else ()),
        *((("candidate_target", comparison.cand.target),) if comparison.cand.target is not None else ()),
    ):
        ET.SubElement(props, "property", name=key, value=_safe(value))
    fail_inc = comparison.options.fail_on_inconclusive
    outcomes = [_cell_case(suite, c, fail_inc) for c in comparison.cells if c.gated]
    outcomes += [_ceiling_case(suite, c) for c in comparison.ceilings]
    suite.set("tests", str(len(outcomes)))
    suite.set("failures", str(sum(outcomes)))
    suite.set("errors", "0")
    suite.set("skipped", "0")
    root.set("tests", str(len(outcomes)))
    root.set("failures", str(sum(outcomes)))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


__all__ = ["render_junit"]
