"""`harness merge RUN_DIR... --out DIR`: join runs of one spec (e.g. shards) into one run directory."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("merge", help="join run directories of one spec (shards) into one")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories to join")
    p.add_argument("--out", required=True, metavar="DIR", help="the merged run directory to create (new or empty)")
    p.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    # lazy: `harness --version` must not import pyarrow
    from harness.rundir.merge import merge_runs

    manifest, counts = merge_runs([Path(p) for p in args.runs], Path(args.out))
    print(f"merged {len(manifest.merged_from or [])} runs: {counts.rows:,} requests, ok {counts.ok:,}, "
          f"error {counts.error:,}, of {manifest.counts.requests:,} planned ({manifest.status})")
    print(Path(args.out))
    return 0
