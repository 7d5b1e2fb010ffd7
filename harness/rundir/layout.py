"""Where things live in a run directory, and how a file is written so it is never half there.

    RUN_DIR/
      manifest.json                     what the run is (`harness.rundir.manifest`)
      .lock                             held (flock) by the one process running the run
      journal/seg-000007.jsonl          rows as they finish, one JSON line each (append only)
      results/part-000007.parquet       sealed segments, then one compacted file

Every replaced file goes through `write_bytes_atomic` / a dot-tmp file: written, fsynced,
renamed over the old one, the folder fsynced. A reader sees the old file or the new one.
On an object store (`harness.rundir.fs.ObjectPath`) a replaced object is one PUT, and a dot-tmp
object is "renamed" by a server-side copy: there too a reader sees the old object or the new one.
"""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

from harness.errors import RunDirError
from harness.rundir.fs import ObjectPath, RunPath

MANIFEST = "manifest.json"
SCHEMA_VERSION = 1  # of the result rows (harness.rundir.records); here so the manifest needs no pyarrow
JOURNAL = "journal"
RESULTS = "results"
LOCK = ".lock"
SEGMENT = re.compile(r"^seg-(\d{6,})\.jsonl$")
PART = re.compile(r"^part-(\d+)\.parquet$")
TMP = re.compile(r"^\..+\.tmp$")

_ENV_REASONS = {
    errno.ENOSPC: "disk full",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
}


def environment_reason(exc: OSError) -> str | None:
    """A short reason when an OSError is the environment's fault (disk full, read-only…), else None."""
    return _ENV_REASONS.get(exc.errno or 0)


class StorageError(RunDirError):
    """The environment refused a write (disk full, read-only, no permission). `reason` is short."""

    def __init__(self, reason: str, *, file: str | None = None) -> None:
        self.reason = reason
        super().__init__(f"cannot write ({reason}); rows already written are kept", file=file)


def storage_error(exc: OSError, where: RunPath | str) -> StorageError:
    """The one-line error for a write the environment refused."""
    reason = environment_reason(exc) or exc.strerror or type(exc).__name__
    return StorageError(reason, file=str(where))


def fsync_path(path: Path) -> None:
    """fsync a file or a folder by path."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def tmp_for(path: RunPath) -> RunPath:
    """The dot-tmp sibling a file is written to before it is renamed into place."""
    return path.with_name(f".{path.name}.tmp")


def commit_tmp(tmp: RunPath, path: RunPath) -> None:
    """fsync `tmp`, rename it over `path`, fsync the folder (on an object store: copy, delete)."""
    if isinstance(tmp, ObjectPath) or isinstance(path, ObjectPath):
        assert isinstance(tmp, ObjectPath) and isinstance(path, ObjectPath)
        tmp.move_to(path)
        return
    fsync_path(tmp)
    os.replace(tmp, path)
    fsync_path(path.parent)


def write_bytes_atomic(path: RunPath, data: bytes) -> None:
    """Replace `path` with `data` atomically; on failure the old file is untouched and no tmp is left."""
    if isinstance(path, ObjectPath):
        path.write_bytes(data)  # one PUT: the object is replaced whole or not at all
        return
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def numbered(folder: RunPath, pattern: re.Pattern[str]) -> dict[int, RunPath]:
    """Files of `folder` whose name matches `pattern` (one number group), by number."""
    if isinstance(folder, Path) and not folder.is_dir():
        return {}
    found: dict[int, RunPath] = {}
    for entry in folder.iterdir():
        match = pattern.match(entry.name)
        if match:
            found[int(match.group(1))] = entry
    return dict(sorted(found.items()))


__all__ = [
    "JOURNAL",
    "LOCK",
    "MANIFEST",
    "PART",
    "RESULTS",
    "SEGMENT",
    "TMP",
    "StorageError",
    "commit_tmp",
    "environment_reason",
    "fsync_path",
    "numbered",
    "storage_error",
    "tmp_for",
    "write_bytes_atomic",
]
