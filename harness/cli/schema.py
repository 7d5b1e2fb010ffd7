"""`harness schema`: print the JSON Schema of the sweep spec."""

from __future__ import annotations

import argparse
import json

from harness.spec.sweepspec import json_schema


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("schema", help="print the JSON Schema of sweep specs (for editors)")
    p.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    print(json.dumps(json_schema(), indent=2, ensure_ascii=False))
    return 0
