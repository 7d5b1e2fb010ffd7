"""A ProbeReport as a terminal table, a JSON document or Markdown (server words escaped)."""

from __future__ import annotations

import json

from harness.probe.verdicts import ProbeReport

__all__ = ["to_json", "to_markdown", "to_table"]

_WIDTH = 100


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _printable(text: str) -> str:
    """Server text on a terminal: no control characters (escape sequences)."""
    return "".join(ch if ch.isprintable() else "?" for ch in text)


def to_table(report: ProbeReport) -> str:
    lines = [
        _printable(
            f"probe of {report.model} at {report.base_url}: {report.requests} requests "
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


def to_markdown(report: ProbeReport) -> str:
    lines = [
        f"# Probe of `{_cell(report.model)}`",
        "",
        (
            f"Endpoint `{_cell(report.base_url)}` · {report.requests} requests (budget {report.budget}) · "
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
