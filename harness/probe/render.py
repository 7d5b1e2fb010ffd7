"""A ProbeReport as a terminal table, a JSON document or Markdown (server words escaped)."""

from __future__ import annotations

import json

from harness.probe.verdicts import ProbeReport
from harness.redact import redact_url

__all__ = ["not_probed_markdown", "to_json", "to_markdown", "to_table"]

_WIDTH = 100


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _printable(text: str) -> str:
    """Server text on a terminal: no control characters (escape sequences)."""
    return "".join(ch if ch.isprintable() else "?" for ch in text)


def to_table(report: ProbeReport, *, target: str | None = None) -> str:
    """The terminal table; `target` (a spec of several targets) heads it with the target's name."""
    who = f"target {target}: " if target else ""
    lines = [
        _printable(
            f"{who}probe of {report.model} at {redact_url(report.base_url)}: {report.requests} requests "
            f"(budget {report.budget}), {report.seconds:.1f} s; logprobs {report.logprobs_mode}; "
            f"unknown fields {report.unknown_field}; dialect {report.dialect}; top_k off: "
            + (", ".join(f"{k} {v}" for k, v in report.top_k_off.items()) or "?")
        ),
        f"{'parameter':<18} {'verdict':<13} {'requests':>8}  evidence",
    ]
    for result in report.results.values():
        evidence = _printable(_clip(result.evidence + (f" [{result.statistic}]" if result.statistic else ""), _WIDTH))
        lines.append(f"{result.name:<18} {result.verdict:<13} {result.requests:>8}  {evidence}")
    lines.extend(f"note: {_printable(_clip(note, _WIDTH + 40))}" for note in report.notes)
    return "\n".join(lines)


def to_json(report: ProbeReport) -> str:
    return json.dumps(report.as_json(), indent=2, ensure_ascii=False)


def _cell(text: str) -> str:
    """Markdown table cell: no pipes, no HTML, no line breaks."""
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")
    return " ".join(escaped.replace("`", "'").split())


def to_markdown(report: ProbeReport, *, target: str | None = None) -> str:
    """The Markdown report; `target` (a spec of several targets) names the target in the heading."""
    who = f" (target `{_cell(target)}`)" if target else ""
    lines = [
        f"# Probe of `{_cell(report.model)}`{who}",
        "",
        (
            f"Endpoint `{_cell(redact_url(report.base_url))}` · {report.requests} requests (budget {report.budget}) · "
            f"{report.seconds:.1f} s · logprobs **{report.logprobs_mode}** · unknown fields **{report.unknown_field}** · "
            f"dialect **{_cell(report.dialect)}** · alpha {report.alpha:g}"
        ),
        "",
        "| parameter | verdict | requests | evidence | statistic |",
        "|---|---|---:|---|---|",
    ]
    for r in report.results.values():
        lines.append(f"| `{r.name}` | **{r.verdict}** | {r.requests} | {_cell(r.evidence)} | {_cell(r.statistic)} |")
    if report.notes:
        lines += ["", *(f"- {_cell(note)}" for note in report.notes)]
    return "\n".join(lines) + "\n"


def not_probed_markdown(target: str, why: str) -> str:
    """The Markdown section of a target that could not be probed (unreachable, model refused)."""
    return f"# Target `{_cell(target)}` not probed\n\n{_cell(why)}\n"
