"""Shared fixtures."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from harness.server.ngram import NGramModel

# Tests never need a display and must not pick up a user's matplotlib config.
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def model() -> NGramModel:
    """The built-in n-gram model, built once for the session (building one takes a second or more)."""
    from harness.server.ngram import default_model

    return default_model()


@pytest.fixture
def key_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """serve_helpers.KEY in serve_helpers.ENV, as a spec written by serve_helpers.write_spec expects."""
    from serve_helpers import ENV, KEY

    monkeypatch.setenv(ENV, KEY)


# -- mypy started early ----------------------------------------------------------------------
# Strict mypy over a cold cache takes about a minute of one core, and the rest of the suite leaves
# the machine's second core mostly idle: when test_lint's mypy test is selected, mypy starts as
# soon as collection ends (niced, in its own process) and the test only collects its result.

MYPY_TEST = "tests/test_lint.py::test_mypy_strict_is_clean"
_MYPY = pytest.StashKey[tuple[subprocess.Popen[bytes], Path]]()


def pytest_collection_finish(session: pytest.Session) -> None:
    if not any(item.nodeid == MYPY_TEST for item in session.items):
        return
    root = Path(__file__).resolve().parents[1]
    fd, name = tempfile.mkstemp(prefix="harness-mypy-", suffix=".txt")
    proc = subprocess.Popen([sys.executable, "-m", "mypy"], cwd=root, stdout=fd, stderr=subprocess.STDOUT)
    os.close(fd)
    os.setpriority(os.PRIO_PROCESS, proc.pid, 5)  # behind the tests when they want both cores
    session.config.stash[_MYPY] = (proc, Path(name))


@pytest.fixture
def early_mypy(request: pytest.FixtureRequest) -> tuple[subprocess.Popen[bytes], Path] | None:
    """(the mypy process started at the end of collection, its output file), or None."""
    return request.config.stash.get(_MYPY, None)


def pytest_sessionfinish(session: pytest.Session) -> None:
    started = session.config.stash.get(_MYPY, None)
    if started is None:
        return
    proc, output = started
    if proc.poll() is None:  # the session stopped before the test (-x, Ctrl-C)
        proc.kill()
        proc.wait()
    output.unlink(missing_ok=True)
