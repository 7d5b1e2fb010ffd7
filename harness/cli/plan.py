"""`harness plan SPEC [--json]`: validate and expand a spec; send nothing."""

from __future__ import annotations

import argparse
import json
import sys

from harness.analysis.cost import CHARS_PER_TOKEN, CostEstimate, plan_costs
from harness.cli.flags import count_flag
from harness.spec.grid import DEFAULT_MAX_POINTS, point_table
from harness.spec.parameters import is_off
from harness.spec.plan import Plan, make_plan
from harness.spec.sweepspec import load_spec


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("plan", help="validate a spec and show what it would send")
    p.add_argument("spec", help="the sweep spec (YAML)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--show", type=count_flag("--show", 0, 1_000_000), default=20, metavar="N",
                   help="points to list (default 20)")
    p.add_argument("--max-points", type=count_flag("--max-points", 1, 10**12), default=DEFAULT_MAX_POINTS,
                   metavar="N", help=f"refuse grids larger than N points (default {DEFAULT_MAX_POINTS:,})")
    p.set_defaults(func=handle)


def _fmt(n: int | None) -> str:
    return "unknown" if n is None else f"{n:,}"


def _show(column: str, value: object) -> str:
    """A value for the table: "off" where it disables the parameter (top_k -1, min_p 0, …)."""
    return f"{value} (off)" if is_off(column, value) else str(value)


def _print_table(plan: Plan, show: int) -> None:
    columns, raw = point_table(plan.preview[:show])
    rows = [[_show(c, v) for c, v in zip(columns, r, strict=True)] for r in raw]
    if columns:
        widths = [max(len(c), *(len(str(r[i])) for r in rows)) for i, c in enumerate(columns)]
        print("  ".join(c.rjust(w) for c, w in zip(columns, widths)))
        for row in rows:
            print("  ".join(str(v).rjust(w) for v, w in zip(row, widths)))
        if plan.points > len(rows):
            print(f"… and {plan.points - len(rows):,} more points")
    else:
        print("(no swept parameters: one point)")


def _seed_note(plan: Plan) -> str:
    base = plan.spec.params.seed_base
    return f"  (seed per sample: {base} + repeat)" if base is not None else ""


def handle(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec)
    plan = make_plan(spec, preview=args.show, max_points=args.max_points)
    costs = plan_costs(plan)
    if args.json:
        json.dump({**plan.to_json(), "cost": [c.to_json() for c in costs]}, sys.stdout, separators=(",", ":"))
        print()
        return 0
    print(f"spec      {spec.name} ({args.spec})")
    from harness.probe.dialects import describe

    axes = {**spec.sweep.grid, **spec.sweep.zip}
    if spec.multi_target:
        for target in spec.target_list:
            view = spec.for_target(target.label)
            print(f"target    {target.label}: {target.public()}  model {target.model_name}  "
                  f"dialect {describe(target.dialect, view.params.sent(), axes)}")
    else:
        print(f"target    {spec.public_target()}  model {spec.model_name}")
        print(f"dialect   {describe(spec.target.dialect, spec.params.sent(), axes)}")
    _print_table(plan, args.show)
    print(f"points    {_fmt(plan.points)}")
    print(f"prompts   {_fmt(plan.prompts)}")
    rule = plan.adaptive
    if rule is None:
        print(f"repeats   {_fmt(plan.repeats)}" + _seed_note(plan))
        print(f"requests  {_fmt(plan.requests)}")
        if spec.multi_target:
            for name, load in plan.per_target.items():
                print(f"  {name:<12} {_fmt(load.requests)} requests ({_fmt(load.points)} points)")
    else:
        drop = f"; drop cells worse than the best (alpha {rule.drop_worse.alpha})" if rule.drop_worse else ""
        print(f"repeats   adaptive {rule.min} … {rule.max} per prompt, +{rule.rounds_step} per round, until "
              f"{rule.until.metric} ±{rule.until.half_width:g} at {rule.until.confidence:.0%}{drop}" + _seed_note(plan))
        print(f"requests  {_fmt(plan.min_requests)} … {_fmt(plan.requests)} (at least min, at most max repeats in every cell)")
        if spec.multi_target:
            for name, load in plan.per_target.items():
                print(f"  {name:<12} {_fmt(plan.target_min_requests(name))} … {_fmt(load.requests)} requests "
                      f"({_fmt(load.points)} points)")
        if spec.params.seed_base is not None:
            from harness.analysis.sequential import MIN_SEED_REPEATS  # numpy: only for this note

            print("note      seed: per_sample sends repeat j the same seed for every prompt, which correlates the "
                  f"prompts of a repeat: intervals are clustered by prompt and by repeat, and no cell is judged "
                  f"before {MIN_SEED_REPEATS} repeats (docs/run.md#adaptive-repeats)")
    print(f"tokens    ~{_fmt(plan.est_prompt_tokens)} prompt (≈{4} chars/token), "
          f"≤{_fmt(plan.max_completion_tokens)} completion")
    _print_costs(costs)
    return 0


def _money(value: float | None) -> str:
    return "unknown" if value is None else f"{value:,.4g}"


def _print_costs(costs: list[CostEstimate]) -> None:
    """Per target, when some target has a price: estimated input cost + upper bound of output cost."""
    if not any(c.price is not None for c in costs):
        return
    print(f"cost      estimate per target: input ≈ prompt chars ÷ {CHARS_PER_TOKEN} tokens, output ≤ max_tokens "
          "(an upper bound), in the prices' currency")
    width = max(len(c.target) for c in costs)
    for c in costs:
        if c.price is None:
            print(f"  {c.target:<{width}}  {_fmt(c.requests)} requests, no price")
            continue
        print(f"  {c.target:<{width}}  {_fmt(c.requests)} requests, ≤{_money(c.cost_max)} "
              f"(~{_money(c.input_cost)} for ~{_fmt(c.input_tokens)} input tokens + "
              f"≤{_money(c.output_cost_max)} for ≤{_fmt(c.output_tokens_max)} output tokens)")
