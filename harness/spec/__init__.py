"""Stage 1 — the sweep spec and its grid: what will be sent, checked before anything is sent.

    parameters.py  the one registry of sampling parameters (names, ranges, types, columns)
    sweepspec.py   pydantic models of the YAML spec (strict)
    load.py        reading a spec file: YAML, ${VAR} interpolation, one-line errors
    datasets.py    prompt sets (JSONL/CSV/YAML), bounded and checked
    axes.py        the swept axes of `sweep:` (grid, zip, exclude)
    grid.py        points × prompts × samples → planned requests (lazy)
    targets.py     targets as an axis: which (target, point) pairs are sent; requests per target
    plan.py        `harness plan`'s numbers (requests, points, tokens)
    doc.py         docs/spec.md generated from the JSON Schema
"""
