"""The report's endpoint-profile section reads untrusted probe files and escapes what it shows."""

from __future__ import annotations

import json
from pathlib import Path

from harness.report import endpoint


def _write(folder: Path, name: str, doc: object) -> None:
    (folder / name).write_text(json.dumps(doc))


def test_profiles_verdicts_and_warnings_for_swept_parameters(tmp_path: Path) -> None:
    _write(tmp_path, "probe.json", {"probe": {"model": "m"}, "min_p": {"verdict": "ignored", "evidence": "e"},
                                    "top_k": {"verdict": "rejected"}, "top_p": {"verdict": "honoured"}})
    profiles = endpoint.load_profiles(tmp_path, "run1")
    assert [p.label for p in profiles] == ["run1"] and profiles[0].verdicts["min_p"] == "ignored"
    lines = endpoint.warnings(profiles, ["min_p", "top_k", "top_p", "temperature"])
    assert len(lines) == 2 and lines[0].startswith("min_p was swept") and "rejects it" in lines[1]
    assert endpoint.warnings(profiles, ["top_p"]) == []


def test_untrusted_files_are_left_out_not_fatal(tmp_path: Path) -> None:
    (tmp_path / "probe-a.json").write_text("{not json")
    (tmp_path / "probe-b.json").write_bytes(b" " * (endpoint.MAX_BYTES + 1))
    _write(tmp_path, "probe-c.json", ["a", "list"])
    _write(tmp_path, "probe-d.json", {"top_p": {"verdict": "<script>"}})  # not a verdict: not shown
    _write(tmp_path, "probe-e.json", {"top_p": {"verdict": "honoured"}, "<img src=x>": {"verdict": "ignored"}})
    profiles = endpoint.load_profiles(tmp_path, "r")
    assert [p.label for p in profiles] == ["r e"]
    html = endpoint.html_section(profiles, ["<img src=x>"])
    md = endpoint.markdown_section(profiles, ["<img src=x>"])
    assert "<img" not in html and "&lt;img src=x&gt;" in html and "<img" not in md
