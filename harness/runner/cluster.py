"""A sweep as shards on a Ray cluster: `harness run --ray ADDRESS` or `runner.executor: ray`.

    result = run_on_ray("sweeps/temperature-top-p.yaml", out="runs", address="local")   # a RunResult

What the driver (this process) does:

1. checks the spec, the endpoint and (for a `base_url` target) the preflight, as a plain run does;
2. splits the sweep into N shards (`--shard K/N`'s slices): `runner.ray.shards`, else the
   cluster's CPUs / `cpus_per_shard`, at most the concurrency and the request count. Each shard's
   run directory is made in the store (`runner.ray.store`, default `OUT/.shards/RUN_ID`, a folder
   every node sees) with 1/N of `concurrency`, `rps` and `tokens_per_min`, so the target's limits
   hold in total;
3. runs one Ray task per shard (harness.runner.raytask): a task only resumes its directory, so
   when Ray re-runs it after its worker or node died (`max_retries`) the rows written stay and
   only requests without a row are sent; a shard lost beyond that is re-submitted once more;
4. merges the shards into `OUT/RUN_ID` (harness.rundir.merge; the manifest gets `executor: ray`
   and `shards: N`, `overrides` the whole run's) and removes the store when every shard completed.

`ray` is imported here only when a Ray run starts (the `[ray]` extra); `harness` never imports it.
The store path is passed through as given, so an object-store prefix works wherever run
directories do.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import HarnessError, TargetError, UsageError
from harness.rundir.fs import RunPath, as_run_path
from harness.rundir.manifest import new_run_id, write_manifest
from harness.runner.dispatch import Stats
from harness.spec.grid import DEFAULT_MAX_POINTS
from harness.spec.sweepspec import SweepSpec, load_spec

if TYPE_CHECKING:
    from harness.runner.raytask import ShardOutcome, ShardProgress
    from harness.runner.session import RunResult

STORE_FILE = "ray.json"  # in the store: the run id, the final folder and the shards' run directories
RESUBMITS = 1  # driver re-submissions of a shard lost beyond Ray's own retries
POLL_S = 0.25


@dataclass(frozen=True)
class Limits:
    """One shard's share of the run's limits."""

    concurrency: int
    rps: float | None
    tokens_per_min: int | None


def split_limits(shards: int, concurrency: int, rps: float | None, tokens_per_min: int | None) -> list[Limits]:
    """Each shard's share: concurrency split exactly (the first get the remainder), rps and
    tokens/min divided by N (tokens rounded down, at least 1). Sums never exceed the run's."""
    if not 1 <= shards <= concurrency:
        raise ValueError(f"{shards} shards cannot share a concurrency of {concurrency}")
    base, extra = divmod(concurrency, shards)
    return [
        Limits(concurrency=base + (1 if i < extra else 0),
               rps=rps / shards if rps is not None else None,
               tokens_per_min=max(1, tokens_per_min // shards) if tokens_per_min is not None else None)
        for i in range(shards)
    ]


def shard_count(wanted: int | None, cluster_cpus: float, cpus_per_shard: float, concurrency: int, requests: int) -> int:
    """N: as asked, else as many as the cluster runs at once; never above the concurrency or the requests."""
    n = wanted if wanted is not None else int(cluster_cpus // cpus_per_shard)
    return max(1, min(n, concurrency, max(requests, 1)))


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UsageError("needs Ray, which is not installed: pip install 'harness[ray]'", key="--ray") from None
    return ray


@contextlib.contextmanager
def connect(address: str | None) -> Iterator[Any]:
    """Ray, connected: `local` starts a cluster on this machine (stopped after), anything else is
    `ray.init(address=...)`; an already initialised Ray (a caller's) is used as it is."""
    ray = _import_ray()
    if ray.is_initialized():
        yield ray
        return
    options: dict[str, Any] = {"include_dashboard": False, "logging_level": "WARNING", "log_to_driver": False}
    try:
        if address == "local":
            ray.init(**options)
        else:
            ray.init(address=address, **options)
    except (ConnectionError, RuntimeError, ValueError) as err:
        where = address or "the default address (RAY_ADDRESS)"
        raise TargetError(f"cannot connect to the Ray cluster at {where}: {str(err).splitlines()[0][:300]}",
                          key="--ray") from None
    try:
        yield ray
    finally:
        ray.shutdown()


def _progress_actor(ray: Any) -> Any:
    @ray.remote(num_cpus=0)
    class Progress:
        def __init__(self) -> None:
            self.shards: dict[int, Any] = {}

        def report(self, index: int, progress: Any) -> None:
            self.shards[index] = progress

        def snapshot(self) -> dict[int, Any]:
            return dict(self.shards)

    return Progress.remote()  # type: ignore[attr-defined]


@dataclass
class RayRun:
    """A Ray run being driven: where its shards live and where the merge goes."""

    run_id: str
    out: RunPath
    store: RunPath
    shard_dirs: list[RunPath]
    preflight_in_workers: bool
    overrides: dict[str, Any]

    @property
    def final_dir(self) -> RunPath:
        return self.out / self.run_id

    @property
    def resume_command(self) -> str:
        return f"harness run --resume {self.store} --ray ADDRESS"

    def save(self) -> None:
        out = str(self.out.absolute()) if isinstance(self.out, Path) else str(self.out)
        doc = {"run_id": self.run_id, "out": out, "shards": [p.name for p in self.shard_dirs],
               "preflight_in_workers": self.preflight_in_workers, "overrides": self.overrides}
        (self.store / STORE_FILE).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, location: str | RunPath) -> RayRun:
        store = as_run_path(location)
        path = store / STORE_FILE
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            return cls(run_id=str(doc["run_id"]), out=as_run_path(doc["out"]), store=store,
                       shard_dirs=[store / str(name) for name in doc["shards"]],
                       preflight_in_workers=bool(doc["preflight_in_workers"]), overrides=dict(doc["overrides"]))
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise UsageError(f"not the shard store of a Ray run ({type(err).__name__})", file=str(path),
                             key="--resume") from None


def is_store(path: str | RunPath) -> bool:
    """Whether `path` is the shard store of a Ray run (what `--resume` takes with `--ray`)."""
    try:
        return (as_run_path(path) / STORE_FILE).is_file()
    except (OSError, ValueError):
        return False


def _cluster_cpus(ray: Any) -> float:
    return float(ray.cluster_resources().get("CPU", 1))


def plan_ray_run(spec: SweepSpec, *, out: RunPath, ray: Any, concurrency: int | None,
                 rps: float | None, check_endpoint: bool, preflight: bool, max_points: int) -> RayRun:
    """Check like a plain run, choose N, make the shards' run directories with their share of the limits."""
    from harness.runner.session import prepare_run

    settings = spec.runner.ray
    total_concurrency = concurrency or spec.runner.concurrency
    total_rps = rps or spec.runner.rps
    run_id = new_run_id(spec.name)
    store = as_run_path(settings.store) / run_id if settings.store else out / ".shards" / run_id
    # one target behind a URL: its preflight runs here, once; otherwise in each task, next to the
    # target it opens (a `local:` model, or each of several targets), as a plain run does
    preflight_here = preflight and not spec.multi_target and spec.target.first_url is not None
    if check_endpoint:
        from harness.runner.session import _check_targets

        _check_targets(spec)
        if preflight_here:
            from harness.probe.preflight import preflight_spec
            from harness.runner.sweep import api_key_for

            preflight_spec(spec, api_key_for(spec))
    requests = _count_requests(spec, max_points)
    n = shard_count(settings.shards, _cluster_cpus(ray), settings.cpus_per_shard, total_concurrency, requests)
    shares = split_limits(n, total_concurrency, total_rps, spec.runner.tokens_per_min)
    dirs: list[RunPath] = []
    for k, share in enumerate(shares, start=1):
        job = prepare_run(spec, out=str(store), shard=(k, n), concurrency=share.concurrency,
                          rps=share.rps, tokens_per_min=share.tokens_per_min,
                          check_endpoint=False, max_points=max_points)
        job.release()
        dirs.append(job.run_dir)
    overrides = {k: v for k, v in (("concurrency", concurrency), ("rps", rps)) if v is not None}
    run = RayRun(run_id=run_id, out=out, store=store, shard_dirs=dirs,
                 preflight_in_workers=preflight and not preflight_here, overrides=overrides)
    run.save()
    return run


def _count_requests(spec: SweepSpec, max_points: int) -> int:
    from harness.spec.plan import make_plan

    return make_plan(spec, preview=0, max_points=max_points).requests


class _Driver:
    """Submits the shards, follows their progress, re-submits lost ones."""

    def __init__(self, ray: Any, spec: SweepSpec, run: RayRun, stats: Stats) -> None:
        from harness.runner.raytask import run_shard

        self.ray = ray
        self.run = run
        self.stats = stats
        settings = spec.runner.ray
        self.task = ray.remote(run_shard)
        self.options = {"num_cpus": settings.cpus_per_shard, "max_retries": settings.max_retries,
                        "retry_exceptions": False}
        self.progress = _progress_actor(ray)
        self.pending: dict[Any, int] = {}
        self.resubmitted: dict[int, int] = {}
        self.outcomes: dict[int, ShardOutcome] = {}
        self.lost: dict[int, str] = {}
        self.asked: Any = None  # a snapshot asked of the progress actor, not yet read
        self.shown: dict[int, ShardProgress] = {}

    def submit(self, index: int) -> None:
        path = str(self.run.shard_dirs[index - 1])
        task = self.task.options(name=f"harness-shard-{index}", **self.options)
        ref = task.remote(path, index, self.run.preflight_in_workers, self.progress)
        self.pending[ref] = index

    def drive(self) -> None:
        for index in range(1, len(self.run.shard_dirs) + 1):
            self.submit(index)
        while self.pending:
            ready, _ = self.ray.wait(list(self.pending), num_returns=len(self.pending), timeout=POLL_S)
            for ref in ready:
                self._collect(ref, self.pending.pop(ref))
            self._update_stats()
        self._final_stats()
        with contextlib.suppress(Exception):
            self.ray.kill(self.progress)

    def _collect(self, ref: Any, index: int) -> None:
        ray = self.ray
        try:
            self.outcomes[index] = ray.get(ref)
        except ray.exceptions.RayTaskError as err:
            cause = getattr(err, "cause", None)
            if isinstance(cause, HarnessError):
                self.cancel()
                raise cause from None
            self.cancel()
            raise RuntimeError(f"shard {index} failed: {str(err).splitlines()[0]}") from err
        except ray.exceptions.RayError as err:  # its worker or node died more often than max_retries
            if self.resubmitted.get(index, 0) < RESUBMITS:
                self.resubmitted[index] = self.resubmitted.get(index, 0) + 1
                self.submit(index)
            else:
                self.lost[index] = type(err).__name__

    def _update_stats(self) -> None:
        """Read the progress actor's latest snapshot without ever waiting for it (its process may
        still be starting while the shards already send)."""
        if self.asked is None:
            self.asked = self.progress.snapshot.remote()
        ready, _ = self.ray.wait([self.asked], timeout=0)
        if not ready:
            return
        try:
            shards: dict[int, ShardProgress] = self.ray.get(self.asked)
        except self.ray.exceptions.RayError:
            return
        finally:
            self.asked = None
        self.shown.update(shards)
        self._show()

    def _final_stats(self) -> None:
        """The finished shards' own counts (exact), the others' last snapshots."""
        from harness.runner.raytask import ShardProgress

        for index, o in self.outcomes.items():
            last = self.shown.get(index)
            self.shown[index] = ShardProgress(total=o.requests, done=o.ok + o.error, ok=o.ok, error=o.error,
                                              retries=last.retries if last else 0, limit=last.limit if last else 0,
                                              halted=o.halted)
        self._show()

    def _show(self) -> None:
        shards, s = self.shown.values(), self.stats
        s.done = sum(p.done for p in shards)
        s.ok = sum(p.ok for p in shards)
        s.error = sum(p.error for p in shards)
        s.retries = sum(p.retries for p in shards)
        s.limit = sum(p.limit for p in shards)
        s.halted = next((p.halted for p in shards if p.halted), None)

    def cancel(self) -> None:
        """Stop every running shard and wait (30 s at most) until each has finished its run
        directory as interrupted — Ray reports a cancelled task at once, before its worker has."""
        for ref in list(self.pending):
            with contextlib.suppress(Exception):
                self.ray.cancel(ref)
        self.pending.clear()
        busy = list(self.run.shard_dirs)
        deadline = time.monotonic() + 30
        while busy and time.monotonic() < deadline:
            busy = [path for path in busy if _locked(path)]
            if busy:
                time.sleep(0.2)


def _locked(run_dir: RunPath) -> bool:
    """Whether a process still holds the run directory's lock (a shard still finishing)."""
    from harness.errors import RunDirError
    from harness.rundir.lock import acquire_lock

    try:
        acquire_lock(run_dir).release()
    except RunDirError:
        return True
    return False

def merge_ray_run(run: RayRun, *, interrupted: bool = False) -> RunResult:
    """Merge the shards into OUT/RUN_ID; record executor and shard count; drop the store once complete."""
    from harness.rundir.manifest import read_manifest
    from harness.rundir.merge import merge_runs
    from harness.runner.session import RunResult

    final = run.final_dir
    if final.is_dir() and any(final.iterdir()) and read_manifest(final).executor == "ray":
        _remove(final)  # an earlier merge of this store (not complete then): made again from the shards
    manifest, counts = merge_runs(run.shard_dirs, final)
    manifest = manifest.model_copy(update={"executor": "ray", "shards": len(run.shard_dirs),
                                           "overrides": dict(run.overrides)})
    write_manifest(final, manifest)
    if manifest.status == "completed":
        with contextlib.suppress(OSError):
            _remove(run.store)
            run.store.parent.rmdir()  # OUT/.shards, when it held only this run
    return RunResult(final, manifest, counts, interrupted=interrupted)


def _unmerged(run: RayRun) -> RunResult:
    """An interrupted Ray run: not merged; its store (what `--resume` takes) stands for the run."""
    from harness.rundir.manifest import Counts, read_manifest
    from harness.rundir.results import journal_segments
    from harness.rundir.store import RowCounts, open_store
    from harness.runner.session import RunResult

    rows = ok = error = requests = 0
    for path in run.shard_dirs:
        requests += read_manifest(path).counts.requests
        if journal_segments(path):
            continue  # a shard still being written (lost, not yet resumed): counted once finished
        counts = open_store(path).counts()
        rows, ok, error = rows + counts.rows, ok + counts.ok, error + counts.error
    manifest = read_manifest(run.shard_dirs[0]).model_copy(update={
        "run_id": run.run_id, "status": "interrupted", "shard": None, "executor": "ray",
        "shards": len(run.shard_dirs), "counts": Counts(requests=requests, ok=ok, error=error)})
    return RunResult(run.store, manifest, RowCounts(rows, ok, error), interrupted=True)


@contextlib.contextmanager
def _signals_interrupt() -> Iterator[None]:
    """SIGINT and SIGTERM stop a Ray run (shards finish their directories as interrupted), also
    when SIGINT was inherited as ignored (`harness run ... &` from a script)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def drive(ray: Any, spec: SweepSpec, run: RayRun, stats: Stats) -> RunResult:
    """Run the shards to their end (or Ctrl-C / SIGTERM) and merge them."""
    driver = _Driver(ray, spec, run, stats)
    stats.total = sum(_planned(path) for path in run.shard_dirs)
    stats.started = time.monotonic()  # rates and ETA from the first task, not from Ray's start
    with _signals_interrupt():
        try:
            driver.drive()
        except KeyboardInterrupt:
            driver.cancel()
            stats.halted = f"interrupted; rows kept in {run.store}; finish with: {run.resume_command}"
            return _unmerged(run)
    if driver.lost:
        stats.halted = (f"shards {sorted(driver.lost)} were lost ({', '.join(sorted(set(driver.lost.values())))}); "
                        f"rows kept in {run.store}; finish with: {run.resume_command}")
        return _unmerged(run)
    return merge_ray_run(run, interrupted=any(o.interrupted for o in driver.outcomes.values()))


def _remove(path: RunPath) -> None:
    """Delete a folder or an object-store prefix with everything in it."""
    if isinstance(path, Path):
        shutil.rmtree(path)
    else:
        path.fs.delete_dir(path.path)


def _planned(path: RunPath) -> int:
    from harness.rundir.manifest import read_manifest

    return read_manifest(path).counts.requests


def run_on_ray(spec: SweepSpec | str | Path, *, out: str | Path = "runs", address: str | None = None,
               limit: int | None = None, concurrency: int | None = None, rps: float | None = None,
               stats: Stats | None = None, check_endpoint: bool = True, preflight: bool = True,
               max_points: int = DEFAULT_MAX_POINTS) -> RunResult:
    """Run a sweep as Ray tasks and merge it into a new run directory inside `out` (blocking)."""
    if limit is not None:
        raise UsageError("is not supported with --ray (the shards slice the whole plan)", key="--limit")
    if not isinstance(spec, SweepSpec):
        spec = load_spec(spec)
    stats = stats if stats is not None else Stats()
    with connect(address if address is not None else spec.runner.ray.address) as ray:
        run = plan_ray_run(spec, out=as_run_path(out), ray=ray, concurrency=concurrency, rps=rps,
                           check_endpoint=check_endpoint, preflight=preflight, max_points=max_points)
        return drive(ray, spec, run, stats)


def resume_on_ray(store: str | Path, *, address: str | None = None, stats: Stats | None = None) -> RunResult:
    """Finish a Ray run that stopped (driver interrupted, shards lost): re-run its shards, merge."""
    from harness.rundir.manifest import read_manifest

    run = RayRun.load(store)
    spec = read_manifest(run.shard_dirs[0]).stored_spec(run.shard_dirs[0])
    stats = stats if stats is not None else Stats()
    with connect(address if address is not None else spec.runner.ray.address) as ray:
        return drive(ray, spec, run, stats)


__all__ = [
    "STORE_FILE",
    "Limits",
    "RayRun",
    "connect",
    "is_store",
    "resume_on_ray",
    "run_on_ray",
    "shard_count",
    "split_limits",
]
