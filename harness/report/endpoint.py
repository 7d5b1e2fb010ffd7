"""The report's "Endpoint profile" section: what `harness run --probe` learnt, beside the sweep.

A run started with `--probe` keeps the endpoint's profile as `RUN_DIR/probe.json` (one
`probe-<name>.json` per target where a run has several). The section shows each parameter's
verdict (honoured, ignored, rejected, inconclusive) per run, and warns first about every *swept*
parameter the endpoint ignores or rejects: differences across its values are then noise or
errors, not the parameter's effect.

The files are untrusted: larger than `MAX_BYTES`, not JSON, or of another shape, they are left
out with a log line; every string from them is escaped where it is rendered.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from harness.rundir.fs import RunPath, as_run_path

__all__ = ["MAX_BYTES", "Profile", "honoured_line", "html_section", "load_profiles", "markdown_section", "warnings"]

log = logging.getLogger(__name__)

MAX_BYTES = 1 << 20
VERDICTS = ("honoured", "ignored", "rejected", "inconclusive")


@dataclass(frozen=True)
class Profile:
    """One probe of one endpoint: its label (run, and target where there are several) and verdicts."""

    label: str
    model: str
    verdicts: dict[str, str]  # parameter -> verdict
    evidence: dict[str, str]


def _parse(doc: Any) -> tuple[str, dict[str, str], dict[str, str]] | None:
    if not isinstance(doc, dict):
        return None
    head = doc.get("probe")
    model = str(head.get("model", "")) if isinstance(head, dict) else ""
    verdicts: dict[str, str] = {}
    evidence: dict[str, str] = {}
    for name, record in doc.items():
        if name == "probe" or not isinstance(record, dict) or record.get("verdict") not in VERDICTS:
            continue
        verdicts[str(name)[:64]] = str(record["verdict"])
        evidence[str(name)[:64]] = str(record.get("evidence", ""))[:300]
    return (model[:200], verdicts, evidence) if verdicts else None


def load_profiles(run_dir: RunPath, label: str) -> list[Profile]:
    """The probe files of a run directory (none when it was run without --probe)."""
    profiles = []
    found: list[RunPath] = list(as_run_path(run_dir).glob("probe*.json"))
    for path in sorted(found, key=str):
        try:
            if path.stat().st_size > MAX_BYTES:
                raise ValueError(f"larger than {MAX_BYTES} bytes")
            parsed = _parse(json.loads(path.read_bytes()))
        except (OSError, ValueError) as exc:
            log.warning("%s: left out of the report (%s)", path, exc)
            continue
        if parsed is None:
            log.warning("%s: left out of the report (not a probe profile)", path)
            continue
        suffix = path.stem.removeprefix("probe").lstrip("-")
        model, verdicts, evidence = parsed
        profiles.append(Profile(f"{label} {suffix}".strip(), model, verdicts, evidence))
    return profiles


def warnings(profiles: list[Profile], swept: list[str]) -> list[str]:
    """One line per swept parameter that an endpoint ignores or rejects."""
    out = []
    for profile in profiles:
        for name in swept:
            verdict = profile.verdicts.get(name)
            if verdict == "ignored":
                out.append(f"{name} was swept, but {profile.label} ignores it (probe): differences across its "
                           f"values are noise, not its effect.")
            elif verdict == "rejected":
                out.append(f"{name} was swept, but {profile.label} rejects it (probe): its cells hold errors.")
    return out


def _rows(profiles: list[Profile]) -> tuple[list[str], list[list[str]]]:
    names = list(dict.fromkeys(name for p in profiles for name in p.verdicts))
    header = ["parameter", *(p.label for p in profiles)]
    return header, [[name, *(p.verdicts.get(name, "") for p in profiles)] for name in names]


def honoured_line(profiles: list[Profile]) -> str:
    """One sentence instead of a table when every endpoint honoured every parameter probed ('' otherwise)."""
    if not all(v == "honoured" for p in profiles for v in p.verdicts.values()):
        return ""
    names = list(dict.fromkeys(name for p in profiles for name in p.verdicts))
    who = "The endpoint" if len(profiles) == 1 else f"Each of the {len(profiles)} endpoints"
    return f"{who} honoured every parameter probed: {', '.join(names)}."


def html_section(profiles: list[Profile], swept: list[str], legend: str = "") -> str:
    """The section as escaped HTML; `legend` says which run each short label ("run 1") stands for."""
    from harness.report.html import esc, html_table, legend_html

    header, rows = _rows(profiles)
    parts = ['<div id="endpoint"><h2>Endpoint profile</h2>',
             "<p>What <code>harness run --probe</code> found each endpoint does with each parameter "
             "(docs/probe.md).</p>"]
    said = warnings(profiles, swept)
    line = honoured_line(profiles)
    if said or not line:  # the run labels appear: say which run each is
        parts.append(legend_html(legend))
    parts += [f"<p><b>{esc(w)}</b></p>" for w in said]
    if line:
        parts.append(f"<p>{esc(line)}</p>")
    else:  # verdicts are words: every column left-aligned
        parts.append(html_table([esc(h) for h in header], ([esc(c) for c in row] for row in rows), left=len(header)))
    return "".join(parts) + "</div>"


def markdown_section(profiles: list[Profile], swept: list[str], legend: str = "") -> str:
    """The section as Markdown (cells escaped)."""
    from harness.report.markdown import legend_md, md, md_table

    header, rows = _rows(profiles)
    out = ["## Endpoint profile", "", "What `harness run --probe` found each endpoint does with each parameter "
           "(docs/probe.md).", ""]
    said = warnings(profiles, swept)
    line = honoured_line(profiles)
    out += legend_md(legend) if said or not line else []
    out += [f"**{md(w)}**\n" for w in said]
    out += [md(line) if line else md_table([md(h) for h in header], [[md(c) for c in row] for row in rows]), ""]
    return "\n".join(out)
