"""Command line: argument parsing and error rendering only.

Each command lives in its own module `harness.cli.<name>` exposing
`register(subparsers) -> None`, which adds its parser and sets `func=handler` where
`handler(args) -> int` returns the exit code.

Start-up: only the module of the command being run is imported. `harness --version` and
`harness --help` import no command at all (the one-line summaries are in `SUMMARIES`), so they
answer without loading pydantic, pandas, pyarrow or matplotlib.
"""

from __future__ import annotations

import argparse
import atexit
import importlib
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from harness.errors import INTERNAL_ERROR_EXIT, HarnessError, print_error

COMMANDS = ("plan", "run", "merge", "serve", "local", "summarize", "report", "compare", "schema", "whatif", "probe")

# The help line of each command, shown by `harness --help` without importing the command
# (a command missing here is imported to get it: add its line when adding a command).
SUMMARIES: dict[str, str] = {
    "plan": "validate a spec and show what it would send",
    "run": "run a sweep (or finish one with --resume)",
    "merge": "join run directories of one spec (shards) into one",
    "serve": "run the local reference endpoint (OpenAI Chat Completions, seeded faults)",
    "local": "start, stop or inspect the embedded model (llama.cpp + Gemma 3 270M)",
    "summarize": "metrics per cell (sweep point) of a run",
    "report": "figures, a self-contained HTML page and Markdown for one or more runs",
    "compare": "paired comparison of two runs (or two targets of one run); exit 1 on a regression (a CI gate)",
    "schema": "print the JSON Schema of sweep specs (for editors)",
    "whatif": "what top_p / top_k / min_p would change, estimated from a run's logprobs",
    "probe": "check that an endpoint accepts and applies each sampling parameter",
}


def _wanted(argv: Sequence[str] | None) -> tuple[str, ...]:
    """The command being run, if any: only its module is imported (pandas/matplotlib cost a second)."""
    args = list(sys.argv[1:] if argv is None else argv)
    first = next((a for a in args if not a.startswith("-")), None)
    return (first,) if first in COMMANDS else ()


class _OneLineParser(argparse.ArgumentParser):
    """Bad flags are one line (no usage dump), exit code 2 — like every other bad input."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _version() -> str:
    from harness import __version__

    return f"harness {__version__}"


class _VersionAction(argparse.Action):
    """`--version` without computing the version unless asked."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="print the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        print(_version())
        parser.exit()


def build_parser(commands: Sequence[str] = COMMANDS) -> argparse.ArgumentParser:
    """The parser; commands not in `commands` get a placeholder (name and summary, no import)."""
    parser = _OneLineParser(
        prog="harness",
        description="Sweep the sampling parameters of an OpenAI-compatible endpoint and measure what they do.",
    )
    parser.add_argument("--version", action=_VersionAction)
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging on stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        if name not in commands and name in SUMMARIES:
            sub.add_parser(name, help=SUMMARIES[name], add_help=False)
            continue
        try:
            module = importlib.import_module(f"harness.cli.{name}")
        except ModuleNotFoundError as exc:  # a command not built yet
            if exc.name == f"harness.cli.{name}":
                continue
            raise
        module.register(sub)
    return parser


def _redact_logs() -> None:
    """Every handler of the root logger drops URL secrets (httpx's `-v` request line included)."""
    import logging

    from harness.redact import RedactingFilter

    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(_wanted(argv))
    try:
        args = parser.parse_args(argv)
    except SystemExit as done:  # --help, --version, or a bad flag (already one line on stderr)
        return done.code if isinstance(done.code, int) else 2
    import logging  # after parsing: --version and --help answer without it

    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    _redact_logs()
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args))
    except HarnessError as err:
        return print_error(err)
    except KeyboardInterrupt:
        print("harness: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:
        if _is_object_store_error(exc):  # s3:// and co.: no such bucket, access denied, unreachable
            print(f"harness: error: {exc}", file=sys.stderr)
            return 2
        # a bug: one line, a code CI cannot mistake for "some requests failed"
        logging.getLogger("harness").debug("internal error", exc_info=True)
        text = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
        print(f"harness: internal error (a bug in harness; please report it, -vv shows the traceback): {text}",
              file=sys.stderr)
        return INTERNAL_ERROR_EXIT


def _is_object_store_error(exc: BaseException) -> bool:
    """An `ObjectStoreError` without importing the object-store layer (only a command that imported
    `harness.rundir.fs` can raise one; `plan`, `--version` and `--help` never load it)."""
    fs = sys.modules.get("harness.rundir.fs")
    return fs is not None and isinstance(exc, fs.ObjectStoreError)


# Commands that make no cyclic garbage to speak of and hold nothing a finaliser must close when they
# return (no files, sockets, threads or temporary folders: `plan` reads its inputs and prints). Their
# process runs with the cyclic GC off (its ~60 collections while pydantic and the spec models load
# free a few hundred objects: ~5% of `plan`'s CPU; memory is freed by reference counting as usual,
# and a 200,000-prompt plan peaks at the same RSS either way, 12% faster) and freezes it before
# exiting, which skips the interpreter's last collections over every object the imports made
# (~20%); atexit handlers and the flushing of stdout/stderr run as usual.
NOTHING_TO_FINALISE = frozenset({"plan"})


def run() -> None:
    """The `harness` command (console script and `python -m harness`)."""
    import gc

    short_lived = bool(set(_wanted(None)) & NOTHING_TO_FINALISE)
    if short_lived:
        gc.disable()
    code = main()
    if _wanted(None) == ("run",):  # the command that imports the most (see exit_now)
        exit_now(code)
    if short_lived:
        gc.freeze()
    sys.exit(code)


def exit_now(code: int) -> NoReturn:
    """End the process as `sys.exit(code)` would, without tearing the interpreter down.

    Python's own exit clears every module and runs a last garbage collection: after `harness
    run` (pydantic, aiohttp, uvloop, the spec's models) the last line on stdout → process gone
    took 53-81 ms (now 5-9 ms). Here the atexit handlers run (logging's flush among them),
    stdout and stderr are flushed, then `os._exit`. When another thread is still alive the
    ordinary exit is taken (it waits for non-daemon threads)."""
    import threading

    if threading.active_count() > 1:
        sys.exit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (BrokenPipeError, ValueError):  # a closed pipe (`| head`): quiet, as main() treats it
            pass
        except OSError:  # a full disk (`> /dev/full`): output was lost; Python's own exit says 120
            code = code or 120
    os._exit(code)


if __name__ == "__main__":
    run()
