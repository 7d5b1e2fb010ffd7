"""The embedded endpoint's process: `python -m harness.localmodel --name gemma-3-270m [--port P]`.

Started by `harness.localmodel.process` (not meant to be run by hand; use `harness local start`). Loads the
model, serves it with `harness serve`'s HTTP layer on 127.0.0.1, and prints one line
`READY <base_url>` on stdout once it listens (port 0 = a free port chosen by the kernel, so no
race). With `--watch-stdin` it exits as soon as its stdin reaches EOF: the parent holds the
other end of that pipe, so the endpoint goes away with harness even after a `kill -9`.
Like a CLI module, this one prints: the ready line on stdout, a failure as one line on stderr.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from collections.abc import Sequence
from typing import Any

from harness.localmodel import ENGINES, READY, default_engine

log = logging.getLogger("harness.localmodel")


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m harness.localmodel")
    parser.add_argument("--name", default="gemma-3-270m")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--n-ctx", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--chat-format", choices=("raw", "gemma"), default=None)
    parser.add_argument("--engine", choices=ENGINES, default=None,
                        help="native: prebuilt llama.cpp server code (xllamacpp, the default when installed); "
                             "compiled: llama-cpp-python under harness's own sampler")
    parser.add_argument("--slots", type=int, default=None, help="sequences decoded together (native engine)")
    parser.add_argument("--watch-stdin", action="store_true", help="exit when stdin reaches EOF")
    return parser.parse_args(argv)


def _watch_stdin() -> None:
    """Exit the whole process when the parent's end of the stdin pipe closes."""
    try:  # os.read on the raw descriptor: no buffered-reader lock to trip interpreter shutdown
        while os.read(0, 4096):
            pass
    except OSError:
        pass
    log.warning("parent gone: stopping the local model")
    os._exit(0)


def _announce(base_url: str) -> None:
    """The ready line for the parent; afterwards stdout joins stderr (the log), so it never blocks."""
    sys.stdout.write(f"{READY} {base_url}\n")
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())


def main(argv: Sequence[str] | None = None) -> int:
    """Load the model and serve it until terminated."""
    args = _parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    if args.watch_stdin:
        threading.Thread(target=_watch_stdin, name="watch-parent", daemon=True).start()
    from harness.errors import HarnessError, TargetError, print_error

    engine = args.engine or default_engine()
    try:
        app = _native_app(args) if engine == "native" else _compiled_app(args)
    except HarnessError as err:
        return print_error(err)
    from harness.server.app import serve

    try:
        serve(app, host=args.host, port=args.port, on_ready=_announce)
    except OSError as err:
        return print_error(TargetError(f"cannot listen on {args.host}:{args.port} ({err.strerror or err})"))
    return 0


def _native_app(args: argparse.Namespace) -> Any:
    """harness's front (validation, wire format) before llama.cpp's server loop (xllamacpp)."""
    from harness.errors import TargetError
    from harness.localmodel.front import create_front
    from harness.localmodel.native import (
        DEFAULT_SLOT_CTX,
        DEFAULT_SLOTS,
        EngineOptions,
        load,
    )

    if args.chat_format == "gemma":
        raise TargetError("the native engine renders plain-completion prompts only; use --engine compiled "
                          "for the gemma chat format")
    options = EngineOptions(slots=args.slots or DEFAULT_SLOTS, slot_ctx=args.n_ctx or DEFAULT_SLOT_CTX,
                            threads=args.threads or default_threads())
    engine = load(args.name, options)
    log.info("serving %s on the native engine (%d slots of %d tokens, llama.cpp's own server at %s)",
             engine.name, options.slots, options.slot_ctx, engine.base_url)
    return create_front(engine, workers=options.slots)


def _compiled_app(args: argparse.Namespace) -> Any:
    """harness serve's app with llama-cpp-python's forward pass under harness's numpy sampler."""
    from harness.localmodel.llama import load
    from harness.server.app import create_app

    options = {key: value for key, value in (("n_ctx", args.n_ctx), ("n_threads", args.threads),
                                             ("chat_format", args.chat_format)) if value is not None}
    model = load(args.name, **options)
    log.info("serving %s on the compiled engine (%s chat format, %d-token context)",
             model.name, model.chat_format, model.n_ctx)
    return create_app({model.name: model})


def default_threads() -> int:
    """llama.cpp threads: see harness.localmodel.llama.default_threads (no llama_cpp import)."""
    from harness.localmodel.llama import default_threads as threads

    return threads()


if __name__ == "__main__":
    sys.exit(main())
