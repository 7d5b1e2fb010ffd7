"""One exception tree for harness. Library code raises; only the CLI renders.

    HarnessError                 exit code 2 unless stated
     ├── SpecError               a sweep spec is invalid (file, key path, value, what is allowed)
     ├── DatasetError            a prompt set is invalid
     ├── RunDirError             a run directory is missing, unreadable or of another spec
     ├── TargetError             the endpoint cannot be used at all (bad base_url, no key, local model failed)
     └── UsageError              a command-line flag is invalid

Anything else escaping to the CLI is a bug in harness: one line, exit code `INTERNAL_ERROR_EXIT`
(never 0, 1, 2 or 130, so CI can tell a crash from "some requests failed").
"""

from __future__ import annotations

import sys

INTERNAL_ERROR_EXIT = 70  # EX_SOFTWARE


class HarnessError(Exception):
    """Base of every error harness raises on purpose. `str(err)` is one line for the user."""

    exit_code: int = 2

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None) -> None:
        self.file = file
        self.key = key
        self.detail = message
        super().__init__(self._render(message, file, key))

    @staticmethod
    def _render(message: str, file: str | None, key: str | None) -> str:
        where = ": ".join(part for part in (file, key) if part)
        line = f"{where}: {message}" if where else message
        return " ".join(line.split("\n"))


class SpecError(HarnessError):
    """A sweep spec is invalid."""


class DatasetError(HarnessError):
    """A prompt dataset is invalid."""


class RunDirError(HarnessError):
    """A run directory cannot be used."""


class TargetError(HarnessError):
    """The target endpoint cannot be used at all."""


class UsageError(HarnessError):
    """A command-line flag or argument is invalid."""


__all__ = [
    "INTERNAL_ERROR_EXIT",
    "DatasetError",
    "HarnessError",
    "RunDirError",
    "SpecError",
    "TargetError",
    "UsageError",
    "print_error",
]


def print_error(err: HarnessError) -> int:
    """The one way a command reports a `HarnessError`: `harness: error: …` on stderr; returns its exit code."""
    print(f"harness: error: {err}", file=sys.stderr)
    return err.exit_code
