"""Command line: argument parsing and error rendering only.

Each command lives in its own module `harness.cli.<name>` exposing
`register(subparsers) -> None`, which adds its parser and sets `func=handler` where
`handler(args) -> int` returns the exit code.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import NoReturn, Sequence

from harness import __version__
from harness.errors import HarnessError

COMMANDS = ("plan", "run", "merge", "serve", "local", "summarize", "report", "compare", "schema", "probe")


def _wanted(argv: Sequence[str] | None) -> tuple[str, ...]:
    """Only import the command being run (imports of pandas/matplotlib cost a second)."""
    args = list(sys.argv[1:] if argv is None else argv)
    first = next((a for a in args if not a.startswith("-")), None)
    return (first,) if first in COMMANDS else COMMANDS


class _OneLineParser(argparse.ArgumentParser):
    """Bad flags are one line (no usage dump), exit code 2 — like every other bad input."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser(commands: Sequence[str] = COMMANDS) -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog="harness",
        description="Sweep the sampling parameters of an OpenAI-compatible endpoint and measure what they do.",
    )
    parser.add_argument("--version", action="version", version=f"harness {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging on stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in commands:
        try:
            module = importlib.import_module(f"harness.cli.{name}")
        except ModuleNotFoundError as exc:  # a command not built yet
            if exc.name == f"harness.cli.{name}":
                continue
            raise
        module.register(sub)
    return parser




def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(_wanted(argv))
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args))
    except HarnessError as err:
        print(f"harness: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("harness: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
