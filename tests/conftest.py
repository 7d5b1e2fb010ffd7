"""Shared fixtures."""

from __future__ import annotations

import os

import pytest
from serve_helpers import ENV, KEY

from harness.server.ngram import NGramModel, default_model

# Tests never need a display and must not pick up a user's matplotlib config.
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def model() -> NGramModel:
    """The built-in n-gram model, built once for the session (building one takes seconds)."""
    return default_model()


@pytest.fixture
def key_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """serve_helpers.KEY in serve_helpers.ENV, as a spec written by serve_helpers.write_spec expects."""
    monkeypatch.setenv(ENV, KEY)
