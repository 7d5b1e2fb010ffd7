"""The spec reference (docs/spec.md), generated from the JSON Schema and the parameter registry.

    python -m harness.spec.doc > docs/spec.md

A test compares the committed file with `render()`, so the reference cannot drift from the code.
"""

from __future__ import annotations

from typing import Any

from harness.redact import SAFE_HEADERS
from harness.spec.axes import MAX_RANGE_VALUES
from harness.spec.datasets import MAX_DATASET_BYTES, MAX_LINE_BYTES, MAX_PROMPTS
from harness.spec.grid import DEFAULT_MAX_POINTS, MAX_EXCLUDE_RULES, MAX_EXCLUDE_WORK
from harness.spec.load import MAX_DEPTH, MAX_NODES, MAX_SPEC_BYTES
from harness.spec.parameters import INT64_MAX, INT64_MIN, PARAM_COLUMNS, REGISTRY
from harness.spec.sweepspec import RESERVED_BODY_KEYS, json_schema

SECTIONS = ("target", "dataset", "params", "sweep", "runner")


def _ref(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    return schema["$defs"][ref.rsplit("/", 1)[1]] if ref else node


def _type(schema: dict[str, Any], prop: dict[str, Any]) -> str:
    if "anyOf" in prop:
        kinds = [_type(schema, p) for p in prop["anyOf"] if p.get("type") != "null"]
        return " or ".join(dict.fromkeys(kinds))
    if "$ref" in prop:
        return "mapping"
    if "const" in prop:
        return f"`{prop['const']}`"
    if "enum" in prop:
        return " or ".join(f"`{v}`" for v in prop["enum"])
    kind = prop.get("type", "any")
    if kind == "array":
        return f"list of {_type(schema, prop.get('items', {}))}"
    if kind == "object":
        return "mapping"
    return {"number": "number", "integer": "integer", "string": "string", "boolean": "true/false"}.get(kind, str(kind))


def _bounds(prop: dict[str, Any]) -> str:
    parts = []
    for sub in [prop, *prop.get("anyOf", [])]:
        for key, sign in (("minimum", "≥"), ("exclusiveMinimum", ">"), ("maximum", "≤"), ("exclusiveMaximum", "<"),
                          ("minLength", "length ≥"), ("maxLength", "length ≤"), ("pattern", "matches")):
            if key in sub:
                if sub[key] in (INT64_MIN, INT64_MAX):
                    parts.append("64-bit")
                    continue
                value = f"`{sub[key]}`" if key == "pattern" else f"{sub[key]:,}" if isinstance(sub[key], int) else sub[key]
                parts.append(f"{sign} {value}")
    return ", ".join(dict.fromkeys(parts))


def _default(prop: dict[str, Any], required: bool) -> str:
    if required:
        return "**required**"
    if "default" not in prop or prop["default"] is None:
        return "not set"
    value = prop["default"]
    return f"`{value}`" if value not in ({}, []) else "empty"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _section(schema: dict[str, Any], name: str, parent: dict[str, Any] | None = None) -> list[str]:
    """The table of a section (`name` under `parent`'s properties, else the top level)."""
    model = _ref(schema, (parent or schema)["properties"][name.rsplit(".", 1)[-1]])
    lines = [f"### `{name}`", "", _cell(model.get("description", "")), "",
             "| key | type | default | allowed | meaning |", "|---|---|---|---|---|"]  # fmt: skip
    required = set(model.get("required", []))
    for key, prop in model["properties"].items():
        if name == "params" and key != "extra_body":
            continue  # the sampling parameters have their own table
        lines.append(f"| `{key}` | {_cell(_type(schema, prop))} | {_default(prop, key in required)} | "
                     f"{_cell(_bounds(prop))} | {_cell(prop.get('description', ''))} |")
    return [*lines, ""]


def _registry() -> list[str]:
    header = '| parameter | allowed (seed API range) | sweepable | result column | "off" value | server default | meaning |'
    lines = [header, "|---|---|---|---|---|---|---|"]
    for p in REGISTRY:
        off = "—" if p.off is None else f"`{p.off}`"
        lines.append(f"| `{p.name}` | {_cell(p.describe())} | {'yes' if p.sweepable else 'no'} | "
                     f"{p.column or '—'} | {off} | {p.default or '—'} | {_cell(p.description)} |")
    return [*lines, ""]


def _model_table(schema: dict[str, Any], title: str, model_name: str, intro: str) -> list[str]:
    model = schema["$defs"][model_name]
    required = set(model.get("required", []))
    lines = [title, "", intro, "", "| key | type | default | allowed | meaning |", "|---|---|---|---|---|"]
    for key, prop in model["properties"].items():
        lines.append(f"| `{key}` | {_cell(_type(schema, prop))} | {_default(prop, key in required)} | "
                     f"{_cell(_bounds(prop))} | {_cell(prop.get('description', ''))} |")
    return [*lines, ""]


def _targets(schema: dict[str, Any]) -> list[str]:
    """`targets:`, `target.price` and `target.runner` (docs/run.md#several-targets-and-replicas)."""
    return [
        "### `targets`",
        "",
        "Instead of `target`: a list of named targets (each: `name`, required and unique, then the keys",
        "of `target`). The targets are one more axis of the sweep: every request has a target, rows have",
        "`target` and `replica` columns, `request_id` includes the target's name. `sweep.grid.target: [names]`",
        "keeps only those targets; an `exclude` rule with a `target:` key drops its other keys' points for",
        "those targets only (with no other key: the targets). A target's `params` are merged over the",
        "spec's `params` (same checks; not a swept parameter); `base_url` may be a list of replicas.",
        "More: [run.md](run.md#several-targets-and-replicas).",
        "",
        *_model_table(schema, "#### `target.price`", "Price", _cell(schema["$defs"]["Price"].get("description", ""))),
        *_model_table(schema, "#### `target.runner`", "TargetLimits",
                      _cell(schema["$defs"]["TargetLimits"].get("description", ""))),
    ]


def render() -> str:
    """The whole reference as Markdown."""
    schema = json_schema()
    top = schema["properties"]
    required = set(schema.get("required", []))
    out = [
        "# Sweep spec reference",
        "",
        "<!-- Generated by `python -m harness.spec.doc > docs/spec.md` from the JSON Schema and the",
        "     parameter registry (harness/spec/parameters.py). Do not edit by hand: tests/test_specdoc.py fails",
        "     when this file and the code differ. -->",
        "",
        "A sweep spec is one YAML file. `harness plan SPEC` checks it and shows what it would send;",
        "`harness schema` prints its JSON Schema (editors use it through the first line",
        "`# yaml-language-server: $schema=../harness/schema/sweep-spec.schema.json`).",
        "Every problem is one line naming the file, the key and what is allowed, and exit code 2.",
        "",
        "## Top level",
        "",
        "| key | type | default | meaning |",
        "|---|---|---|---|",
    ]
    for key, prop in top.items():
        out.append(f"| `{key}` | {_cell(_type(schema, prop))} | {_default(prop, key in required)} | "
                   f"{_cell(_ref(schema, prop).get('description', prop.get('description', '')))} |")
    out += ["", "`${VAR}` and `${VAR:-default}` are replaced by environment variables in every string; `$$` is a",
            "literal `$`.", "", "## Sections", ""]
    for name in SECTIONS:
        out += _section(schema, name)
        if name == "target":
            out += _targets(schema)
    out += _section(schema, "runner.ray", _ref(schema, top["runner"]))
    out += [
        "`scoring` is a list of scorer names (`exact_match`, `normalized_match`, `contains`, `numeric`,",
        "`json_valid`, `regex`) or mappings with `type` and the scorer's options; a misspelt name gets a",
        "suggestion.",
        "",
        "## Sampling parameters",
        "",
        "Set under `params` (sent with every request) or swept under `sweep.grid` / `sweep.zip`. One",
        "registry defines each one; every value — fixed, in a grid or zip axis, in an `exclude` rule, or",
        "in `params.extra_body` when it names one of these — is checked against the same range. Only",
        "the parameters that are set are sent (no hidden defaults). Integers are 64-bit.",
        "",
        *_registry(),
        f"Parameter columns are shown in this order everywhere: {', '.join(f'`{c}`' for c in PARAM_COLUMNS)}.",
        "A result row's column holds the value actually sent (null when not sent).",
        "",
        "### `seed: per_sample`",
        "",
        "`seed: per_sample` sends seed `0 + sample` and `seed: {per_sample: BASE}` sends `BASE + sample`,",
        "where `sample` is the repeat index (0 … `sweep.repeats` − 1). Repeats of a cell then differ, a",
        "rerun sends the same seeds, and the same (prompt, repeat) gets the same seed in every cell",
        "(common random numbers, which make paired comparisons between cells sharper). The `seed`",
        "column of each row holds the seed sent. It cannot be combined with a swept `seed`.",
        "",
        "### `params.extra_body`",
        "",
        "Merged into every request body (server-specific fields such as `repetition_penalty`).",
        "A known parameter here is range-checked and may not also be set in `params` or swept;",
        f"{', '.join(f'`{k}`' for k in RESERVED_BODY_KEYS)} are set by harness and refused. Values must be",
        "plain JSON (no dates, NaN or integers beyond 64 bits).",
        "",
        "## Sweep semantics",
        "",
        "- `grid` axes form a Cartesian product in the order written (the last varies fastest); `zip`",
        "  axes advance together and multiply the grid. An axis is a list or a range",
        f"  `{{from, to, step}}` (exact decimals, end inclusive, at most {MAX_RANGE_VALUES:,} values).",
        "- `exclude` drops a point matching every key of a rule (a list value means any of).",
        "- `sample: N` keeps N points chosen with `sample_seed` (without `exclude`, only those N are",
        "  ever built: a random search over a huge grid is cheap); `repeats` sends each request that many times.",
        "",
        "## Limits",
        "",
        "| what | bound |",
        "|---|---|",
        f"| spec file | a regular file (no pipe or device) of at most {MAX_SPEC_BYTES:,} bytes |",
        f"| YAML after alias expansion | at most {MAX_NODES:,} values, nested at most {MAX_DEPTH} levels |",
        (f"| points visited (the grid × zip product; with `sample` and no `exclude`, the sample) | at most "
         f"{DEFAULT_MAX_POINTS:,}; raise with `harness plan/run --max-points N` |"),
        (f"| `exclude` | at most {MAX_EXCLUDE_RULES:,} rules and {MAX_EXCLUDE_WORK:,} rule checks "
         "(rules × points visited) |"),
        (f"| dataset file | a regular file of at most {MAX_DATASET_BYTES:,} bytes, {MAX_PROMPTS:,} prompts, "
         f"JSONL lines of at most {MAX_LINE_BYTES:,} characters, valid Unicode (no lone surrogates) |"),
        "| times (`timeout_s`, `max_retry_after_s`, `deadline_s`) | finite; at most a day (a week for `deadline_s`) |",
        "| `base_url` | http(s), a host, a port from 1 to 65535, ASCII, no `user:key@` |",
        "| header names / values | RFC 7230 tokens / printable ASCII without newlines, ≤ 8192 characters |",
        "",
        "## Secrets",
        "",
        "The key is read from the variable named by `target.api_key_env` and never written. What is",
        "written or printed (manifest, report, `plan` output, logs) holds the spec with every URL query",
        "value, fragment and `user:pass@` replaced by `***`, and every header value replaced by `***`",
        "unless the header is one of: " + ", ".join(f"`{h}`" for h in sorted(SAFE_HEADERS)) + ".",
        "",
    ]
    return "\n".join(out)


if __name__ == "__main__":
    print(render(), end="")
