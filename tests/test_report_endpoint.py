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


def test_all_honoured_is_one_sentence_and_a_table_lists_verdicts_left_aligned(tmp_path: Path) -> None:
    for run in ("a", "b"):
        (tmp_path / run).mkdir()
        _write(tmp_path / run, "probe.json", {"top_p": {"verdict": "honoured"}, "min_p": {"verdict": "honoured"}})
    both = endpoint.load_profiles(tmp_path / "a", "a") + endpoint.load_profiles(tmp_path / "b", "b")
    sentence = "Each of the 2 endpoints honoured every parameter probed: top_p, min_p."
    assert endpoint.honoured_line(both) == sentence
    assert f"<p>{sentence}</p>" in endpoint.html_section(both, ["min_p"])
    assert "<table>" not in endpoint.html_section(both, ["min_p"])
    assert "Each of the 2 endpoints honoured every parameter probed: top\\_p, min\\_p." in \
        endpoint.markdown_section(both, ["min_p"])
    _write(tmp_path / "b", "probe.json", {"top_p": {"verdict": "honoured"}, "min_p": {"verdict": "ignored"}})
    mixed = endpoint.load_profiles(tmp_path / "a", "a") + endpoint.load_profiles(tmp_path / "b", "b")
    assert endpoint.honoured_line(mixed) == ""
    html = endpoint.html_section(mixed, ["min_p"])
    assert '<tr><td class="l">min_p</td><td class="l">honoured</td><td class="l">ignored</td></tr>' in html
    md = endpoint.markdown_section(mixed, ["min_p"])
    assert "**min\\_p was swept, but b ignores it (probe)" in md and "\n\n\n" not in md


def test_short_run_labels_get_a_legend_only_where_they_appear(tmp_path: Path) -> None:
    for run, min_p in (("a", "honoured"), ("b", "honoured")):
        (tmp_path / run).mkdir()
        _write(tmp_path / run, "probe.json", {"top_p": {"verdict": "honoured"}, "min_p": {"verdict": min_p}})
    legend = "run 1 = quick-a<b>; run 2 = serve-b"
    both = endpoint.load_profiles(tmp_path / "a", "run 1") + endpoint.load_profiles(tmp_path / "b", "run 2")
    assert "Runs:" not in endpoint.html_section(both, ["min_p"], legend)  # one sentence names no run
    assert "Runs:" not in endpoint.markdown_section(both, ["min_p"], legend)
    _write(tmp_path / "b", "probe.json", {"top_p": {"verdict": "honoured"}, "min_p": {"verdict": "ignored"}})
    mixed = endpoint.load_profiles(tmp_path / "a", "run 1") + endpoint.load_profiles(tmp_path / "b", "run 2")
    html = endpoint.html_section(mixed, ["min_p"], legend)
    assert '<p class="muted">Runs: run 1 = quick-a&lt;b&gt;; run 2 = serve-b.</p>' in html
    assert html.index("Runs:") < html.index("but run 2 ignores it") < html.index("<th class=\"l\">run 1</th>")
    md = endpoint.markdown_section(mixed, ["min_p"], legend)
    assert "Runs: run 1 = quick-a&lt;b&gt;; run 2 = serve-b." in md and md.index("Runs:") < md.index("run 2 ignores")
