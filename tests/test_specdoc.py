"""docs/spec.md is generated from the schema and the registry; this fails when they differ."""

from __future__ import annotations

from pathlib import Path

from harness.spec.doc import render
from harness.spec.parameters import REGISTRY

REPO = Path(__file__).resolve().parents[1]


def test_committed_spec_reference_is_current() -> None:
    committed = (REPO / "docs/spec.md").read_text(encoding="utf-8")
    assert committed == render(), "run: python -m harness.spec.doc > docs/spec.md"


def test_reference_lists_every_registry_parameter_with_its_range() -> None:
    text = render()
    for param in REGISTRY:
        assert f"| `{param.name}` | {param.describe()} |" in text
