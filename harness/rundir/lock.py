"""The run directory's lock: one process at a time runs (or resumes) a run."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from harness.errors import RunDirError
from harness.rundir.layout import LOCK


class RunLock:
    """An exclusive, non-blocking flock on `RUN_DIR/.lock`; released by `release` or process exit."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
        except OSError as exc:
            raise RunDirError(f"cannot create the lock file ({exc.strerror})", file=str(self.path)) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunDirError("another harness process is running this run", file=str(run_dir)) from None
        self._fd: int | None = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Drop the lock (idempotent)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


__all__ = ["RunLock"]
