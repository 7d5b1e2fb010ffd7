"""`harness probe SPEC` or `harness probe --base-url URL --model M`: per-parameter verdicts.

Exit codes: 0 every parameter honoured (or inconclusive), 1 some rejected or ignored, 2 bad input.
A SPEC of several targets: every target is probed (or the one `--target NAME` names), one section
each, and the exit code is the worst of theirs; a target that cannot be probed (unreachable, the
model refused) is one line on stderr, exit 2, and the others are still probed.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from harness.errors import HarnessError, UsageError, print_error

if TYPE_CHECKING:
    from harness.probe.verdicts import ProbeReport
    from harness.spec.sweepspec import SweepSpec


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "probe",
        help="check that an endpoint accepts and applies each sampling parameter",
        description="For each sampling parameter: rejected, ignored, honoured or inconclusive, with evidence.",
    )
    p.add_argument("spec", nargs="?", help="a sweep spec whose target is probed")
    p.add_argument("--target", metavar="NAME", help="with a SPEC of several targets: the one to probe (default: every target)")
    p.add_argument("--base-url", metavar="URL", help="the API root, e.g. http://127.0.0.1:8000/v1")
    p.add_argument("--model", metavar="M", help="the model name to send")
    p.add_argument("--api-key-env", metavar="VAR", help="environment variable holding the API key")
    p.add_argument("--budget", type=int, default=None, metavar="N", help="most requests to send (default 160, at least 40)")
    p.add_argument("--alpha", type=float, default=1e-3, help="false-'honoured' rate of each statistical test (default 1e-3)")
    p.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    p.add_argument("--markdown", metavar="FILE", help="also write the report as Markdown")
    p.set_defaults(func=handle)


def _check(args: argparse.Namespace) -> int:
    from harness.probe.suite import DEFAULT_BUDGET, MIN_BUDGET

    budget = DEFAULT_BUDGET if args.budget is None else args.budget
    if budget < MIN_BUDGET:
        raise UsageError(f"must be at least {MIN_BUDGET} requests, not {budget}", key="--budget")
    if not 0 < args.alpha < 0.5:
        raise UsageError(f"must be between 0 and 0.5, not {args.alpha}", key="--alpha")
    if args.markdown and Path(args.markdown).is_dir():
        raise UsageError(f"{args.markdown} is a folder; give a file name", key="--markdown")
    if args.spec and (args.base_url or args.model):
        raise UsageError("give a SPEC or --base-url/--model, not both", key="--base-url")
    if not args.spec and not (args.base_url and args.model):
        raise UsageError("give a SPEC, or both --base-url and --model", key="--base-url")
    if args.base_url and not args.base_url.startswith(("http://", "https://")):
        raise UsageError(f"{args.base_url!r} must start with http:// or https://", key="--base-url")
    return budget


def _key(var: str | None) -> str | None:
    if not var:
        return None
    key = os.environ.get(var)
    if not key:
        raise UsageError(f"the environment variable {var} is not set or empty", key="--api-key-env")
    return key


def _probe_spec(spec: SweepSpec, budget: int, alpha: float) -> ProbeReport:
    """Probe a one-target spec (or one target's view of a spec); `local:` starts the embedded model."""
    from harness.probe import run_probe
    from harness.runner.sweep import check_reachable, open_target

    if spec.target.first_url:
        check_reachable(spec.target.first_url, source=spec.source)
    with open_target(spec) as endpoint:
        return run_probe(endpoint, budget=budget, alpha=alpha, headers=dict(spec.target.headers))


def _probe_targets(spec: SweepSpec, budget: int, alpha: float) -> dict[str, ProbeReport | HarnessError]:
    """Every target of the spec, one after another, in spec order: its report, or why it could not
    be probed (said on stderr at once, one line naming the target)."""
    found: dict[str, ProbeReport | HarnessError] = {}
    for i, name in enumerate(spec.target_names):
        try:
            found[name] = _probe_spec(spec.for_target(name), budget, alpha)
        except HarnessError as err:
            key = err.key
            if key is not None and key.split(".")[0] == "target":  # the view's `target.x` is `targets[i].x`
                key = f"targets[{i}]" + key[len("target"):]
            found[name] = type(err)(err.detail, file=err.file, key=key)
            print_error(type(err)(f"target {name}: {err.detail}", file=err.file, key=key))
    return found


def _print_targets(found: dict[str, ProbeReport | HarnessError], args: argparse.Namespace) -> int:
    """One section (or JSON object) per target; the worst exit code."""
    import json

    from harness.probe.render import not_probed_markdown, to_markdown, to_table

    if args.json:
        doc = {name: r.as_json() if not isinstance(r, HarnessError) else {"error": str(r), "exit_code": r.exit_code}
               for name, r in found.items()}
        print(json.dumps(doc, indent=2, ensure_ascii=False))
    else:
        sections = [to_table(r, target=name) if not isinstance(r, HarnessError) else f"target {name}: not probed: {r}"
                    for name, r in found.items()]
        print("\n\n".join(sections))
    if args.markdown:
        parts = [to_markdown(r, target=name) if not isinstance(r, HarnessError)
                 else not_probed_markdown(name, str(r)) for name, r in found.items()]
        Path(args.markdown).write_text("\n".join(parts), encoding="utf-8")
        print(f"markdown: {args.markdown}", file=sys.stderr)
    return max(r.exit_code for r in found.values())


def handle(args: argparse.Namespace) -> int:
    from harness.probe import run_probe
    from harness.probe.render import to_json, to_markdown, to_table
    from harness.runner.sweep import Endpoint, check_reachable
    from harness.spec.sweepspec import load_spec

    budget = _check(args)
    if args.target and not args.spec:
        raise UsageError("only with a SPEC", key="--target")
    if args.spec:
        spec = load_spec(args.spec)
        if args.target:
            if args.target not in spec.target_names:
                raise UsageError(f"{args.target!r} is not a target of {args.spec}; targets: {', '.join(spec.target_names)}",
                                 key="--target")
            spec = spec.for_target(args.target)
        elif spec.multi_target:
            return _print_targets(_probe_targets(spec, budget, args.alpha), args)
        report = _probe_spec(spec, budget, args.alpha)
    else:
        endpoint = Endpoint(base_url=args.base_url, model=args.model, api_key=_key(args.api_key_env))
        check_reachable(endpoint.base_url, source=None)
        report = run_probe(endpoint, budget=budget, alpha=args.alpha)
    print(to_json(report) if args.json else to_table(report))
    if args.markdown:
        Path(args.markdown).write_text(to_markdown(report), encoding="utf-8")
        print(f"markdown: {args.markdown}", file=sys.stderr)
    return report.exit_code
