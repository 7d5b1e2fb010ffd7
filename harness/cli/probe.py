"""`harness probe SPEC` or `harness probe --base-url URL --model M`: per-parameter verdicts.

Exit codes: 0 every parameter honoured (or inconclusive), 1 some rejected or ignored, 2 bad input.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from harness.errors import UsageError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "probe",
        help="check that an endpoint accepts and applies each sampling parameter",
        description="For each sampling parameter: rejected, ignored, honoured or inconclusive, with evidence.",
    )
    p.add_argument("spec", nargs="?", help="a sweep spec whose target is probed")
    p.add_argument("--target", metavar="NAME", help="with a SPEC of several targets: the one to probe (default: the first)")
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


def handle(args: argparse.Namespace) -> int:
    from harness.probe import run_probe
    from harness.probe.render import to_json, to_markdown, to_table
    from harness.runner.sweep import Endpoint, check_reachable, open_target
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
        if spec.target.first_url:
            check_reachable(spec.target.first_url, source=spec.source)
        with open_target(spec) as endpoint:
            report = run_probe(endpoint, budget=budget, alpha=args.alpha, headers=dict(spec.target.headers))
    else:
        endpoint = Endpoint(base_url=args.base_url, model=args.model, api_key=_key(args.api_key_env))
        check_reachable(endpoint.base_url, source=None)
        report = run_probe(endpoint, budget=budget, alpha=args.alpha)
    print(to_json(report) if args.json else to_table(report))
    if args.markdown:
        Path(args.markdown).write_text(to_markdown(report), encoding="utf-8")
        print(f"markdown: {args.markdown}", file=sys.stderr)
    return report.exit_code
