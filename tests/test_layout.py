"""The package layout stays the way docs/development.md describes it.

- No two modules share a name outside `cli/` (whose modules are named after the commands), so
  `engine`, `stats`, `limits`, `merge` … can never again mean two different things.
- Every repository path named in the package's source (docstrings, comments, messages) or in the
  docs exists: a moved or deleted file leaves no dangling reference behind.
- The package's top level holds only the stage packages and a few cross-cutting modules.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "harness"
TOP_LEVEL_MODULES = {"__init__.py", "__main__.py", "_version.py", "api.py", "errors.py", "redact.py", "textsafe.py"}
PATH_REF = re.compile(r"(?<![\w./-])((?:harness|docs|bench|tests|sweeps|datasets|reports|baselines)/[\w./-]*\w\.(?:py|md|yaml|json|jsonl|csv))\b")


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def test_module_names_are_unique_outside_cli() -> None:
    seen: dict[str, list[str]] = defaultdict(list)
    for path in _modules():
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] == "cli" or path.name in {"__init__.py", "__main__.py"}:
            continue
        seen[path.stem].append(str(rel))
    clashes = {name: where for name, where in seen.items() if len(where) > 1}
    assert not clashes, f"modules sharing a name: {clashes}"


def test_top_level_holds_only_packages_and_core_modules() -> None:
    loose = {p.name for p in PACKAGE.glob("*.py")} - TOP_LEVEL_MODULES
    assert not loose, f"put these in the package of their stage (docs/development.md): {sorted(loose)}"


def _referenced_paths(text: str) -> set[str]:
    """Paths named in `text`; transcripts of error messages (`harness: error: …`) name made-up files."""
    lines = (line for line in text.splitlines() if not line.startswith("harness: error:"))
    return {m.group(1) for line in lines for m in PATH_REF.finditer(line)}


def test_every_path_named_in_source_and_docs_exists() -> None:
    texts = [*_modules(), REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "bench" / "RESULTS.md"]
    missing = {
        f"{source.relative_to(REPO)} → {ref}"
        for source in texts
        for ref in _referenced_paths(source.read_text(encoding="utf-8"))
        if not (REPO / ref).exists() and "*" not in ref
    }
    assert not missing, "dangling references:\n" + "\n".join(sorted(missing))


def test_the_reference_check_sees_a_dangling_path() -> None:
    assert _referenced_paths("see harness/nowhere/engine.py and docs/run.md.") == {"harness/nowhere/engine.py", "docs/run.md"}


def test_package_docstrings_list_only_modules_that_exist() -> None:
    listed = re.compile(r"^\s{4,}(\w+)\.py\s", re.MULTILINE)
    missing = [
        f"{init.relative_to(REPO)} lists {name}.py"
        for init in PACKAGE.rglob("__init__.py")
        for name in listed.findall(init.read_text(encoding="utf-8").split('"""')[1] if '"""' in init.read_text(encoding="utf-8") else "")
        if not (init.parent / f"{name}.py").exists()
    ]
    assert not missing, missing
