"""`harness plan SPEC [--json]`: validate and expand a spec; send nothing."""

from __future__ import annotations

import argparse
import json
import sys

from harness.grid import point_table
from harness.plan import Plan, make_plan
from harness.spec import load_spec


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plan", help="validate a spec and show what it would send")
    p.add_argument("spec", help="the sweep spec (YAML)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--show", type=int, default=20, metavar="N", help="points to list (default 20)")
    p.set_defaults(func=handle)


def _fmt(n: int | None) -> str:
    return "unknown" if n is None else f"{n:,}"


def _print_table(plan: Plan, show: int) -> None:
    columns, rows = point_table(plan.preview[:show])
    if columns:
        widths = [max(len(c), *(len(str(r[i])) for r in rows)) for i, c in enumerate(columns)]
        print("  ".join(c.rjust(w) for c, w in zip(columns, widths)))
        for row in rows:
            print("  ".join(str(v).rjust(w) for v, w in zip(row, widths)))
        if plan.points > len(rows):
            print(f"… and {plan.points - len(rows):,} more points")
    else:
        print("(no swept parameters: one point)")


def handle(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec)
    plan = make_plan(spec, preview=max(args.show, 0))
    if args.json:
        json.dump(plan.to_json(), sys.stdout, separators=(",", ":"))
        print()
        return 0
    print(f"spec      {spec.name} ({args.spec})")
    print(f"target    {spec.target.base_url or 'local:' + str(spec.target.local)}  model {spec.model_name}")
    from harness.probe.dialects import describe

    print(f"dialect   {describe(spec.target.dialect, spec.params.sent(), {**spec.sweep.grid, **spec.sweep.zip})}")
    _print_table(plan, args.show)
    print(f"points    {_fmt(plan.points)}")
    print(f"prompts   {_fmt(plan.prompts)}")
    print(f"repeats   {_fmt(plan.repeats)}")
    print(f"requests  {_fmt(plan.requests)}")
    print(f"tokens    ~{_fmt(plan.est_prompt_tokens)} prompt (≈{4} chars/token), "
          f"≤{_fmt(plan.max_completion_tokens)} completion")
    return 0
