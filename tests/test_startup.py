"""Start-up: each command imports only what it uses (an import-set test, not a timing test).

Timings are printed by bench/bench_startup.py. What keeps `harness plan` fast is checked here by
its causes: the spec models are built on first use (not at import), `--version`/`--help` load no
logging or object-store layer, `plan` loads nothing of the run path and skips the exit-time GC.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("pandas", "pyarrow", "matplotlib", "numpy", "pydantic", "httpx", "aiohttp", "rich", "yaml", "uvloop")
PROBE = (
    "import runpy, sys\n"
    "sys.argv = ['harness', *sys.argv[1:]]\n"
    "try:\n    runpy.run_module('harness', run_name='__main__')\n"
    "except SystemExit:\n    pass\n"
    f"print('HEAVY:', *(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)\n"
)


def heavy_imports(*args: str) -> set[str]:
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], check=False, capture_output=True, text=True, timeout=60)
    line = next(x for x in proc.stderr.splitlines() if x.startswith("HEAVY:"))
    return set(line.split()[1:])


# The console script's path (`harness.cli.run`, as `python -m harness` and the `harness` script take),
# then which of `watched` modules the command loaded and the GC's state at exit: frozen, still enabled
# (atexit handlers run after `run()`'s sys.exit, the last registered first: these run last).
RUN_PROBE = """
import atexit, gc, sys
watched = sys.argv[1].split(",")
sys.argv = ["harness", *sys.argv[2:]]
atexit.register(lambda: print("LOADED:", *(m for m in watched if m in sys.modules), file=sys.stderr))
atexit.register(lambda: print("GC:", gc.get_freeze_count() > 0, gc.isenabled(), file=sys.stderr))
from harness.cli import run
run()
"""
RUN_PATH = ("harness.rundir", "harness.runner", "harness.client", "harness.report", "harness.analysis.metrics")


def run_cli(watched: tuple[str, ...], *args: str) -> tuple[subprocess.CompletedProcess[str], set[str], bool]:
    """Run `harness ARGS` through `harness.cli.run`: the process, the `watched` modules it loaded, and
    whether it ran with the cyclic GC off and froze it before exiting."""
    proc = subprocess.run([sys.executable, "-c", RUN_PROBE, ",".join(watched), *args], check=False,
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    lines = proc.stderr.splitlines()
    loaded = next(x for x in lines if x.startswith("LOADED:")).split()[1:]
    frozen, enabled = next(x for x in lines if x.startswith("GC:")).split()[1:]
    assert (frozen, enabled) in (("True", "False"), ("False", "True"))  # both or neither
    return proc, set(loaded), frozen == "True"


@pytest.mark.parametrize("args", [["--version"], ["--help"], [], ["plan", "--help"]])
def test_version_and_help_import_nothing_heavy(args: list[str]) -> None:
    allowed = {"pydantic", "yaml"} if args[:1] == ["plan"] else set()
    assert heavy_imports(*args) <= allowed


@pytest.mark.slow
def test_plan_imports_no_data_or_http_stack() -> None:
    got = heavy_imports("plan", str(REPO / "sweeps/quickstart.yaml"))
    assert "pydantic" in got  # the probe really ran the command
    assert got <= {"pydantic", "yaml"}


@pytest.mark.parametrize("args", [["--version"], ["--help"]])
def test_version_and_help_load_no_logging_nor_object_store(args: list[str]) -> None:
    proc, loaded, frozen = run_cli(("logging", "harness.rundir.fs", "importlib.metadata", "harness.spec"), *args)
    assert proc.returncode == 0 and proc.stdout.strip()
    assert loaded == set()
    assert not frozen  # nothing to save: only `plan` runs without the cyclic GC


def test_plan_loads_nothing_of_the_run_path_and_skips_the_exit_gc() -> None:
    """`harness plan`: the spec, the dataset and the grid, nothing that sends, stores or reports;
    no cyclic GC, frozen before the interpreter's exit-time collections (its output is intact)."""
    proc, loaded, frozen = run_cli(("harness.spec.sweepspec", *RUN_PATH), "plan", "sweeps/quickstart.yaml")
    assert proc.returncode == 0, proc.stderr
    assert "requests  180" in proc.stdout and proc.stdout.rstrip().splitlines()[-1].startswith("tokens")
    assert loaded == {"harness.spec.sweepspec"}
    assert frozen


@pytest.mark.slow
def test_plan_with_a_bad_spec_still_says_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ntarget: {base_url: http://127.0.0.1:9/v1, model: m}\ndataset: {path: d.jsonl}\n"
                   "runner: {concurrency: 0}\n")
    proc, _, frozen = run_cli((), "plan", str(bad))
    assert proc.returncode == 2 and frozen
    assert proc.stderr.splitlines()[0].startswith(f"harness: error: {bad}: runner.concurrency: 0: Input should be")


def test_spec_models_are_built_on_first_use() -> None:
    """Every model of the spec defers building its validator (`defer_build`): importing the spec costs
    no pydantic schema work; loading a spec builds SweepSpec once, its sections inline."""
    from pydantic import BaseModel

    import harness.spec.sweepspec as sweepspec

    models = [v for v in vars(sweepspec).values()
              if isinstance(v, type) and issubclass(v, BaseModel) and v.__module__ == sweepspec.__name__]
    assert {m.__name__ for m in models} >= {"SweepSpec", "Target", "Params", "Sweep", "RunnerConfig", "AdaptiveRepeats"}
    assert all(m.model_config.get("defer_build") is True for m in models)


def test_importing_the_spec_builds_no_model() -> None:
    code = (
        "import sys\nimport harness.spec.sweepspec as s\n"
        "from pydantic import BaseModel\n"
        "models = [v for v in vars(s).values() if isinstance(v, type) and issubclass(v, BaseModel) and v is not BaseModel]\n"
        "print(sum(m.__pydantic_complete__ for m in models), len(models), 'pydantic.plugin._loader' in sys.modules)\n"
        "s.load_spec(sys.argv[1])\n"
        "print(s.SweepSpec.__pydantic_complete__, s.Target.__pydantic_complete__)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(REPO / "sweeps/quickstart.yaml")], check=True,
                          capture_output=True, text=True, timeout=120)
    before, after = proc.stdout.splitlines()
    built, total, plugins_loaded = before.split()
    assert (built, plugins_loaded) == ("0", "False") and int(total) >= 10
    assert after == "True False"  # SweepSpec built (Target inline in it, not on its own)


def test_object_store_errors_are_one_line_without_importing_the_store_early(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`main` recognises an ObjectStoreError (exit 2, one line) though it no longer imports harness.rundir.fs."""
    import harness.cli.plan as plan_cli
    from harness.cli import INTERNAL_ERROR_EXIT, main
    from harness.rundir.fs import ObjectStoreError

    def store_fails(args: object) -> int:
        raise ObjectStoreError("s3://bucket/runs", PermissionError("Access Denied"))

    monkeypatch.setattr(plan_cli, "handle", store_fails)
    assert main(["plan", "x.yaml"]) == 2
    assert capsys.readouterr().err == "harness: error: s3://bucket/runs: Access Denied\n"

    def bug(args: object) -> int:
        raise OSError("disk on fire")

    monkeypatch.setattr(plan_cli, "handle", bug)
    assert main(["plan", "x.yaml"]) == INTERNAL_ERROR_EXIT
    assert "internal error" in capsys.readouterr().err


def test_help_lists_every_command_with_its_own_summary() -> None:
    """The summaries shown without importing a command are the ones the commands register."""
    import argparse

    from harness.cli import COMMANDS, SUMMARIES, build_parser

    parser = build_parser(COMMANDS)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    registered = {choice.dest: choice.help for choice in sub._choices_actions}
    assert set(SUMMARIES) == set(COMMANDS) == set(registered)
    assert registered == SUMMARIES


def test_version_is_the_installed_one_without_package_metadata() -> None:
    """`--version` reads harness/_version.py (pyproject.toml's dynamic version), not importlib.metadata."""
    from importlib.metadata import version

    import harness

    assert harness.__version__ == version("harness")
    code = (
        "import runpy, sys\nsys.argv = ['harness', '--version']\n"
        "try:\n    runpy.run_module('harness', run_name='__main__')\nexcept SystemExit:\n    pass\n"
        "print('importlib.metadata' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=60).stdout
    assert out.split() == ["harness", harness.__version__, "False"]
