"""Progress of a sweep on stderr with rich: done/total, ok/error, retries, req/s, ETA, concurrency.

With several targets (one lane each, harness.runner.lanes) the line shows the totals over the
lanes — concurrency limits and requests in flight summed — and one line per target follows.

Used only by the CLI layer. The display reads the runner's `Stats` counters at its own refresh
rate (a few times a second), so a fast sweep pays nothing per request for it. rich is imported
only when a display is shown (not for `--quiet`, which is how scripts and CI run).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from harness.runner.dispatch import Stats

if TYPE_CHECKING:
    from rich.console import Console


def _duration(seconds: float) -> str:
    if math.isnan(seconds) or seconds == float("inf"):
        return "--:--"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60:02d}:{rest % 60:02d}"


def summary(stats: Stats, now: float | None = None) -> str:
    """One line: `1,234/5,000 ok 1,230 error 4 retries 87 412.3 req/s ETA 00:09`."""
    elapsed = max((time.monotonic() if now is None else now) - stats.started, 1e-9)
    rate = stats.done / elapsed
    eta = (stats.total - stats.done) / rate if rate > 0 else float("inf")
    parts = [
        f"{stats.done:,}/{stats.total:,}",
        f"ok {stats.ok:,}",
        f"error {stats.error:,}",
        f"retries {stats.retries:,}",
        f"{rate:,.1f} req/s",
        f"ETA {_duration(eta)}" if stats.done < stats.total else f"took {_duration(elapsed)}",
    ]
    if stats.limit:
        inflight = stats.inflight
        parts.append(f"concurrency {stats.limit}" + (f" (in flight {inflight})" if inflight is not None else ""))
    return "  ".join(parts)


def lane_lines(stats: Stats) -> list[str]:
    """With several targets, one line each: `  fast  done 120  ok 118  error 2  concurrency 8 (in flight 8)`
    (the totals line sums them); nothing for one target."""
    if len(stats.lanes) < 2:
        return []
    width = max(len(name) for name in stats.lanes)
    return [f"  {name:<{width}}  done {lane.done:,}  ok {lane.ok:,}  error {lane.error:,}  "
            f"concurrency {lane.limit} (in flight {lane.inflight})" for name, lane in stats.lanes.items()]


class _View:
    def __init__(self, stats: Stats) -> None:
        self._stats = stats

    def __rich__(self) -> Any:
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.text import Text

        bar = ProgressBar(total=max(self._stats.total, 1), completed=self._stats.done, width=40)
        return Group(bar, Text(summary(self._stats)), *(Text(line) for line in lane_lines(self._stats)))


class RunProgress:
    """`with RunProgress(stats, quiet=False): ...` shows live progress on stderr."""

    def __init__(self, stats: Stats, *, quiet: bool = False, console: Console | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._stats = stats
        self._quiet = quiet
        self._console_given = console
        self._live: Any = None
        self._clock = clock

    @property
    def _console(self) -> Console:
        if self._console_given is None:
            from rich.console import Console

            self._console_given = Console(stderr=True)
        return self._console_given

    def __enter__(self) -> Self:
        if self._quiet:
            return self
        if self._console.is_terminal:
            from rich.live import Live

            self._live = Live(_View(self._stats), console=self._console, refresh_per_second=4, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._live is not None:
            self._live.__exit__(exc_type, exc, tb)
        elif not self._quiet:
            self._console.print(summary(self._stats, self._clock()), highlight=False, markup=False, soft_wrap=True)
            for line in lane_lines(self._stats):
                self._console.print(line, highlight=False, markup=False, soft_wrap=True)


__all__ = ["RunProgress", "lane_lines", "summary"]
