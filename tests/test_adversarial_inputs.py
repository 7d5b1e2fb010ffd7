"""Every bad spec, dataset or flag: one line on stderr, exit 2, no traceback, no hang.

The committed corpus is tests/adversarial/specs/*.yaml (each names what its error must say in a
first-line `# expect:` comment; `dataset_*` specs point at tests/adversarial/datasets/). Inputs
that cannot be committed (a FIFO, /dev/zero, a symlink loop, files over the size bounds) are made
here in tmp_path. The cases that could hang or read without end (FIFOs, /dev/zero, symlink loops,
huge files) and a valid spec run `python -m harness` in a subprocess with a timeout; the rest call
`harness.cli.main` in this process (the same entry point, minus ~0.5 s of interpreter start-up
each), under an alarm that fails a case still running after the same timeout.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

import pytest

from harness.cli import main

pytestmark = pytest.mark.slow  # ~130 cases, some that take seconds; the fast lane skips the module

CORPUS = Path(__file__).parent / "adversarial"
SPECS = sorted((CORPUS / "specs").glob("*.yaml"))
TIMEOUT_S = 60

VALID = """name: adv
target:
  base_url: http://127.0.0.1:9/v1
  model: m
dataset:
  path: {dataset}
"""


def harness(*args: str, cwd: Path | None = None, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("ADV_")}, **(extra_env or {})}
    return subprocess.run(
        [sys.executable, "-m", "harness", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,  # a hang fails the test instead of blocking CI
        env=env,
        cwd=cwd,
    )


Harness = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def in_process(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    """`harness(…)` as `harness.cli.main` in this process: exit code, stdout and stderr as a
    CompletedProcess; the ADV_ variables and the folder as the subprocess would have them."""

    def hang(_signum: int, _frame: FrameType | None) -> None:
        pytest.fail(f"still running after {TIMEOUT_S} s (a hang?)")

    def call(*args: str, cwd: Path | None = None, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        for name in [k for k in os.environ if k.startswith("ADV_")]:
            monkeypatch.delenv(name)
        for name, value in (extra_env or {}).items():
            monkeypatch.setenv(name, value)
        if cwd is not None:
            monkeypatch.chdir(cwd)
        capsys.readouterr()
        signal.alarm(TIMEOUT_S)
        try:
            code = main(list(args))
        finally:
            signal.alarm(0)
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(["harness", *args], code, out, err)

    previous = signal.signal(signal.SIGALRM, hang)
    try:
        yield call
    finally:
        signal.signal(signal.SIGALRM, previous)


def assert_one_line(proc: subprocess.CompletedProcess[str], *words: str) -> str:
    err = proc.stderr
    assert "Traceback" not in err, err
    assert proc.returncode == 2, (proc.returncode, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def expectation(path: Path) -> str:
    first = path.read_bytes().split(b"\n", 1)[0].decode()
    assert first.startswith("# expect: "), f"{path.name} needs a first line '# expect: <words>'"
    return first.removeprefix("# expect: ")


def test_corpus_is_large_and_covers_datasets() -> None:
    assert len(SPECS) >= 80
    datasets = {p.name for p in (CORPUS / "datasets").iterdir()} - {"_valid.jsonl"}
    referenced = " ".join(p.read_text(errors="replace") for p in SPECS)
    assert all(name in referenced for name in datasets), "every bad dataset has a spec that uses it"


@pytest.mark.parametrize("spec", SPECS, ids=[p.stem for p in SPECS])
def test_bad_spec_in_corpus_is_one_line_exit_2(spec: Path, in_process: Harness) -> None:
    line = assert_one_line(in_process("plan", spec.name, cwd=spec.parent), expectation(spec))
    named = "datasets/" if spec.name.startswith("dataset_") else spec.name
    assert named in line, line


def test_valid_corpus_spec_passes(tmp_path: Path) -> None:
    """The corpus's errors come from the bad part, not from the shared base."""
    spec = tmp_path / "valid.yaml"
    spec.write_text(VALID.format(dataset=CORPUS / "datasets" / "_valid.jsonl"))
    proc = harness("plan", str(spec))
    assert proc.returncode == 0, proc.stderr


def _spec(tmp_path: Path, dataset: str = "data.jsonl") -> Path:
    (tmp_path / "data.jsonl").write_text('{"prompt": "hi"}\n')
    path = tmp_path / "spec.yaml"
    path.write_text(VALID.format(dataset=dataset))
    return path


def test_fifo_as_spec_does_not_hang(tmp_path: Path) -> None:
    fifo = tmp_path / "spec.yaml"
    os.mkfifo(fifo)
    assert_one_line(harness("plan", str(fifo)), "spec.yaml", "not a regular file")


def test_dev_zero_as_spec() -> None:
    assert_one_line(harness("plan", "/dev/zero"), "/dev/zero", "not a regular file")


def test_folder_as_spec(tmp_path: Path) -> None:
    assert_one_line(harness("plan", str(tmp_path)), "a folder")


def test_symlink_loop_as_spec(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").symlink_to(tmp_path / "b.yaml")
    (tmp_path / "b.yaml").symlink_to(tmp_path / "a.yaml")
    assert_one_line(harness("plan", str(tmp_path / "a.yaml")), "a.yaml", "cannot read")


def test_huge_spec_is_refused_without_reading_it(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    with big.open("wb") as fh:
        fh.truncate(5 << 30)  # a sparse 5 GiB file: reading it would take minutes and memory
    assert_one_line(harness("plan", str(big)), "big.yaml", "at most 1,048,576 bytes")


def test_fifo_as_dataset_does_not_hang(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo.jsonl")
    spec = _spec(tmp_path, "fifo.jsonl")
    assert_one_line(harness("plan", str(spec)), "fifo.jsonl", "not a regular file")


def test_dev_zero_as_dataset(tmp_path: Path) -> None:
    spec = _spec(tmp_path, "/dev/zero")
    proc = harness("plan", str(spec))
    assert_one_line(proc, "/dev/zero")


def test_symlink_loop_as_dataset(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").symlink_to(tmp_path / "b.jsonl")
    (tmp_path / "b.jsonl").symlink_to(tmp_path / "a.jsonl")
    spec = _spec(tmp_path, "a.jsonl")
    assert_one_line(harness("plan", str(spec)), "spec.yaml", "dataset.path")


def test_overlong_jsonl_line_is_bounded(tmp_path: Path) -> None:
    spec = _spec(tmp_path, "long.jsonl")
    with (tmp_path / "long.jsonl").open("w") as fh:
        fh.write('{"prompt": "' + "a" * (17 << 20) + '"}\n')
    assert_one_line(harness("plan", str(spec)), "long.jsonl", "line 1", "longer than")


def test_huge_csv_field(tmp_path: Path) -> None:
    spec = _spec(tmp_path, "big.csv")
    (tmp_path / "big.csv").write_text("prompt\n" + '"' + "x" * 300_000 + '"\n')
    assert_one_line(harness("plan", str(spec)), "big.csv", "CSV")


FLAG_CASES = [
    (["plan", "SPEC", "--max-points", "0"], "--max-points"),
    (["plan", "SPEC", "--max-points", "lots"], "--max-points"),
    (["plan", "SPEC", "--show", "-1"], "--show"),
    (["run", "SPEC", "--rps", "1e-300"], "--rps"),
    (["run", "SPEC", "--rps", "nan"], "--rps"),
    (["run", "SPEC", "--rps", "inf"], "--rps"),
    (["run", "SPEC", "--concurrency", "0"], "--concurrency"),
    (["run", "SPEC", "--concurrency", "99999999999999999999999"], "--concurrency"),
    (["run", "SPEC", "--max-points", "-5"], "--max-points"),
    (["run", "SPEC", "--limit", "-1"], "--limit"),
    (["run", "SPEC", "--shard", "0/3"], "--shard"),
    (["run", "SPEC", "--shard", "4/3"], "--shard"),
    (["run", "SPEC", "--shard", "99999999999999999999999/99999999999999999999999"], "--shard"),
    (["run", "SPEC", "--shard", "1/x"], "--shard"),
    (["run", "SPEC", "--limit", "99999999999999999999999"], "--limit"),
    (["plan", "SPEC", "--no-such-flag"], "--no-such-flag"),
    (["nosuchcommand"], "nosuchcommand"),
]


@pytest.mark.parametrize("args,word", FLAG_CASES, ids=[" ".join(a) for a, _ in FLAG_CASES])
def test_bad_flag_is_one_line_exit_2(tmp_path: Path, args: list[str], word: str, in_process: Harness) -> None:
    spec = _spec(tmp_path)
    argv = [str(spec) if a == "SPEC" else a for a in args]
    assert_one_line(in_process(*argv), word)


def test_run_refuses_a_huge_grid_before_anything(tmp_path: Path, in_process: Harness) -> None:
    spec = CORPUS / "specs" / "grid_1e9_exclude.yaml"
    proc = in_process("run", str(spec), "--out", str(tmp_path / "runs"))
    assert_one_line(proc, "1,000,000,000 points", "--max-points")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("key", ["clé-non-ascii", "line1\nline2", "   ", "tab\u0007bell"])
def test_unusable_api_key_is_one_line_without_echo(tmp_path: Path, key: str, in_process: Harness) -> None:
    spec = _spec(tmp_path)
    spec.write_text(spec.read_text().replace("model: m", "model: m\n  api_key_env: ADV_KEY"))
    proc = in_process("run", str(spec), "--out", str(tmp_path / "runs"), extra_env={"ADV_KEY": key})
    line = assert_one_line(proc, "target.api_key_env", "$ADV_KEY")
    assert key.strip() not in line or not key.strip()
    assert not (tmp_path / "runs").exists()
