"""`harness run SPEC [...]` and `harness run --resume RUN_DIR [--retry-errors]`.

A thin layer over `harness.runner.session`: flags in, progress and messages on stderr, the run
directory as the last line on stdout, and the exit code (0 all ok, 1 some error rows, 2 bad
input, 130 interrupted — finished rows kept).
"""

from __future__ import annotations

import argparse
import gc
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from harness.cli.flags import count_flag, runner_flag, shard_flag
from harness.errors import UsageError
from harness.rundir.fs import display
from harness.spec.grid import DEFAULT_MAX_POINTS

if TYPE_CHECKING:  # imported when a run starts: `harness --version` must not pay for them
    from harness.rundir.finisher import Finisher
    from harness.rundir.manifest import Shard
    from harness.runner.session import Hook
    from harness.runner.sweep import Endpoint, SweepJob
    from harness.spec.sweepspec import SweepSpec


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("run", help="run a sweep (or finish one with --resume)")
    p.add_argument("spec", nargs="?", help="the sweep spec (YAML)")
    p.add_argument("--out", default="runs", metavar="DIR",
                   help="folder (or s3://bucket/prefix, gs://, az://) for the new run directory (default runs/)")
    p.add_argument("--concurrency", type=runner_flag("concurrency"), metavar="N", help="requests in flight (overrides runner.concurrency)")
    p.add_argument("--rps", type=runner_flag("rps"), metavar="X", help="requests per second limit (overrides runner.rps)")
    p.add_argument("--max-points", type=count_flag("--max-points", 1, 10**12), default=DEFAULT_MAX_POINTS, metavar="N",
                   help=f"refuse grids larger than N points (default {DEFAULT_MAX_POINTS:,})")
    p.add_argument("--limit", type=count_flag("--limit", 0, 2**62), metavar="N", help="run only the first N requests of the plan")
    p.add_argument("--shard", type=shard_flag, metavar="K/N",
                   help="run only shard K of N (a deterministic slice of the request ids); auto: K and N from the "
                   "job array's environment (Kubernetes Indexed Job, Slurm array, HARNESS_SHARD_INDEX/COUNT)")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.add_argument("--resume", metavar="RUN_DIR", help="finish a run: send only requests without a row (with SPEC: the run's spec given again, "
                   "needed when the stored copy was redacted because it held a secret)")
    p.add_argument("--retry-errors", action="store_true", help="with --resume: send the error rows again and replace them")
    p.add_argument("--allow-scorer", action="append", default=[], metavar="MODULE:FUNCTION",
                   help="with --resume: import this custom scorer of the stored spec (the metric of adaptive repeats)")
    p.add_argument("--no-preflight", action="store_true", help="skip the check that the server accepts every swept value")
    p.add_argument("--probe", action="store_true", help="probe the endpoint first (harness probe) and keep its profile as RUN_DIR/probe.json")
    p.add_argument("--report", nargs="?", const="", metavar="DIR",
                   help="after the run, write its report (to DIR, default RUN_DIR/report)")
    p.add_argument("--ray", metavar="ADDRESS",
                   help="run the sweep as shards on a Ray cluster (`local` starts one here; needs the [ray] extra); "
                   "overrides runner.ray.address and sets runner.executor: ray")
    p.set_defaults(func=handle)


def _prepare(args: argparse.Namespace, spec: SweepSpec | None) -> SweepJob:
    """The job of this command; `spec`: SPEC already loaded (by `_wants_ray`), else None."""
    from harness.runner.session import prepare_resume, prepare_run
    from harness.runner.sweep import parse_shard

    if args.resume:  # SPEC beside --resume: the run's spec given again (its stored copy was redacted)
        for flag, value in (("--limit", args.limit), ("--shard", args.shard)):
            if value is not None:
                raise UsageError("is fixed by the run being resumed; not allowed with --resume", key=flag)
        return prepare_resume(args.resume, retry_errors=args.retry_errors, concurrency=args.concurrency, rps=args.rps,
                              spec=args.spec, allow_scorers=tuple(args.allow_scorer))
    if not args.spec:
        raise UsageError("a sweep spec is required (or --resume RUN_DIR)", key="SPEC")
    if args.retry_errors:
        raise UsageError("only with --resume RUN_DIR", key="--retry-errors")
    if args.allow_scorer:
        raise UsageError("only with --resume RUN_DIR (a spec given here may name its own scorers)", key="--allow-scorer")
    shard: Shard | None = None
    if args.shard == "auto":
        from harness.runner.jobarray import shard_from_env, unfinished_run
        from harness.spec.sweepspec import load_spec

        shard = shard_from_env()
        spec = spec if spec is not None else load_spec(args.spec)
        left = unfinished_run(args.out, spec, shard, args.limit)
        if left is not None:  # the scheduler ran this task again: finish what the earlier attempt left
            if not args.quiet:
                print(f"harness: shard {shard}: resuming {display(left)}, left unfinished by an earlier attempt",
                      file=sys.stderr)
            return prepare_resume(left, concurrency=args.concurrency, rps=args.rps, spec=spec, wait_for_lock=True)
    else:
        shard = parse_shard(args.shard) if args.shard else None
    return prepare_run(spec if spec is not None else args.spec, out=args.out, shard=shard, limit=args.limit,
                       concurrency=args.concurrency, rps=args.rps, max_points=args.max_points)


def _custom_scorers(job: SweepJob, resumed: bool) -> tuple[str, ...]:
    """The `module:function` scorers of the spec given on this command line (the user's own code);
    none for --resume, whose spec comes from the run directory."""
    if resumed:
        return ()
    items = [item if isinstance(item, str) else item.get("type") for item in job.spec.scoring]
    return tuple(str(item) for item in items if isinstance(item, str) and ":" in item)


def _write_report(job: SweepJob, out: str, *, quiet: bool, resumed: bool) -> None:
    """`--report`: the run's report (default inside the run directory); its path goes to stderr."""
    from harness.report import ReportOptions, build_report

    options = ReportOptions(allow_scorers=_custom_scorers(job, resumed))
    if out:
        target = Path(out)
    else:
        assert isinstance(job.run_dir, Path)  # _check_report_out: a run on an object store names a local folder
        target = job.run_dir / "report"
    report = build_report([job.run_dir], target, options)
    if not quiet:
        print(f"report: {report.out_dir / 'index.html'}", file=sys.stderr)


def _check_report_out(report: str | None, out: str, resume: str | None) -> None:
    from harness.rundir.fs import is_remote

    if report is not None and not report and is_remote(resume or out):
        raise UsageError("the run directory is on an object store; give a local folder: --report DIR", key="--report")
    if report and is_remote(report):
        raise UsageError("a report is written to a local folder; give one (a run may be on s3://)", key="--report")
    if report and Path(report).exists() and not Path(report).is_dir():
        raise UsageError(f"{report} is a file; give a folder for the report", key="--report")


def _before_first_request(args: argparse.Namespace) -> Hook:
    """Once the target is open, before the first request: the preflight (harness.probe.preflight:
    every swept value accepted, else exit 2 naming it), with --probe the endpoint's profile, then
    `gc.freeze()`.

    The freeze: what exists by then (pydantic, aiohttp, the spec's models, the plan) lives as long
    as this process, so the garbage collector need not walk it again while the requests run (its
    full collections cost ~0.03 s of CPU in a 4,000-request run). The command's process only: the
    Python API (harness.run_sweep) leaves its caller's collector alone."""

    async def hook(job: SweepJob, endpoint: Endpoint) -> None:
        if not args.no_preflight:
            from harness.probe.preflight import preflight_job_async
            await preflight_job_async(job, endpoint)
        if args.probe:
            from harness.probe.suite import store_probe_async
            several = len(job.manifest.target_map()) > 1
            await store_probe_async(job.run_dir, endpoint, headers=dict(job.spec.target.headers), quiet=args.quiet,
                                    target=job.spec.target.label if several else None)
        gc.freeze()

    return hook


def _started(job: SweepJob, quiet: bool) -> None:
    if not quiet:
        print(f"harness: run directory {display(job.run_dir)} (if stopped, finish with: {job.resume_command})",
              file=sys.stderr)


def _wants_ray(args: argparse.Namespace) -> tuple[bool, SweepSpec | None]:
    """(`--ray`, a spec with `runner.executor: ray`, or `--resume` of a Ray run's shard store;
    the spec when it was loaded to find out — the run uses it rather than loading it again)."""
    from harness.runner.cluster import is_store

    if args.resume:
        return is_store(args.resume), None
    if args.ray is not None:
        return True, None
    if not args.spec:
        return False, None
    from harness.spec.sweepspec import load_spec

    spec = load_spec(args.spec)
    return spec.runner.executor == "ray", spec


def _handle_ray(args: argparse.Namespace) -> int:
    """The Ray path (harness.runner.cluster): same flags, progress, last line and exit codes."""
    from harness.runner.cluster import resume_on_ray, run_on_ray
    from harness.runner.dispatch import Stats
    from harness.runner.progress import RunProgress

    for flag, value in (("--shard", args.shard), ("--limit", args.limit), ("--probe", args.probe or None),
                        ("--retry-errors", args.retry_errors or None)):
        if value is not None:
            raise UsageError("is not supported with a Ray run (its shards slice the whole plan)", key=flag)
    if args.resume and args.spec:
        raise UsageError("a Ray run's store is resumed with the spec its shards stored; give no SPEC", key="SPEC")
    stats = Stats()
    if not args.quiet:
        print(f"harness: running on Ray ({args.ray or 'runner.ray.address'})", file=sys.stderr)
    with RunProgress(stats, quiet=args.quiet):
        if args.resume:
            result = resume_on_ray(args.resume, address=args.ray, stats=stats)
        else:
            result = run_on_ray(args.spec, out=args.out, address=args.ray, limit=args.limit,
                                concurrency=args.concurrency, rps=args.rps, stats=stats,
                                preflight=not args.no_preflight, max_points=args.max_points)
    if stats.halted:
        print(f"harness: {stats.halted.replace('RUN_DIR', str(result.run_dir))}", file=sys.stderr)
    elif args.report is not None and not result.interrupted:
        from harness.report import ReportOptions, build_report

        if args.report:
            target = Path(args.report)
        else:
            assert isinstance(result.run_dir, Path)  # _check_report_out: a run on an object store names a folder
            target = result.run_dir / "report"
        report = build_report([result.run_dir], target, ReportOptions())
        if not args.quiet:
            print(f"report: {report.out_dir / 'index.html'}", file=sys.stderr)
    print(result.run_dir)
    return result.exit_code


def _early_finisher(args: argparse.Namespace) -> Finisher | None:
    """The sealing helper (harness.rundir.finisher), started before the spec is loaded so that its
    imports (pyarrow) run on the other core while this process prepares the run; stopped unused
    when the run turns out to need none (a large session, Ray, an object store)."""
    from harness.rundir.fs import is_remote

    if args.ray is not None or is_remote(args.resume or args.out):
        return None
    from harness.rundir.finisher import Finisher

    return Finisher.start()


def _abandon(helper: Finisher | None) -> None:
    if helper is not None:
        helper.abandon()


def handle(args: argparse.Namespace) -> int:
    from harness.runner.dispatch import Stats
    from harness.runner.progress import RunProgress
    from harness.runner.session import run_job
    from harness.runner.sweep import start_finisher

    _check_report_out(args.report, args.out, args.resume)
    helper = _early_finisher(args)
    try:
        ray, spec = _wants_ray(args)
        if not ray and args.ray is not None:
            raise UsageError("takes a new sweep (SPEC) or a Ray run's shard store (--resume STORE)", key="--ray")
        job = None if ray else _prepare(args, spec)
    except BaseException:
        _abandon(helper)
        raise
    if job is None:
        _abandon(helper)
        return _handle_ray(args)
    start_finisher(job, helper)  # sealing and compaction in a helper: this process never imports pyarrow
    _started(job, args.quiet)
    stats = Stats(total=job.pending)
    with RunProgress(stats, quiet=args.quiet):
        try:
            result = run_job(job, stats=stats, before_first_request=_before_first_request(args))
        finally:
            gc.unfreeze()  # frozen for the requests by the hook (see _before_first_request)
    if result.interrupted:
        print(f"harness: interrupted; rows kept in {display(job.run_dir)}; finish with: {job.resume_command}",
              file=sys.stderr)
    elif args.report is not None:
        _write_report(job, args.report, quiet=args.quiet, resumed=bool(args.resume))
    if stats.halted:
        print(f"harness: {stats.halted.replace('RUN_DIR', display(job.run_dir))}", file=sys.stderr)
    print(display(job.run_dir))
    return result.exit_code


