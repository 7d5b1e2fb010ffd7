"""`harness merge RUN_DIR|PREFIX... --out DIR`: join runs of one spec (e.g. shards) into one run directory.

A PREFIX (a local folder or `s3://bucket/prefix`) holding run directories one level down — the
shards of a job array that all wrote to one `--out` — stands for all of them."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("merge", help="join run directories of one spec (shards) into one")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR",
                   help="run directories to join, or prefixes holding them (local folders or s3://…)")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="the merged run directory to create (new or empty; a folder or s3://…)")
    p.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    # lazy: `harness --version` must not import pyarrow
    from harness.rundir.fs import as_run_path, display
    from harness.rundir.merge import merge_runs

    out = as_run_path(args.out)
    manifest, counts = merge_runs(list(args.runs), out)
    print(f"merged {len(manifest.merged_from or [])} runs: {counts.rows:,} requests, ok {counts.ok:,}, "
          f"error {counts.error:,}, of {manifest.counts.requests:,} planned ({manifest.status})")
    print(display(out))
    return 0
