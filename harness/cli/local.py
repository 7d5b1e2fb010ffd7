"""`harness local start|stop|status`: the embedded model's endpoint for users who want it directly."""

from __future__ import annotations

import argparse
import sys

from harness.errors import UsageError
from harness.localmodel import process as local


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `local` command and its three actions."""
    parser = subparsers.add_parser(
        "local",
        help="start, stop or inspect the embedded model (llama.cpp + Gemma 3 270M)",
        description="The embedded real model as an OpenAI-compatible endpoint on 127.0.0.1. "
                    "A spec with `target: {local: gemma-3-270m}` starts and stops it by itself.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    start = actions.add_parser("start", help="start the endpoint (foreground: Ctrl-C stops it)")
    start.add_argument("--port", type=int, default=None, help="port on 127.0.0.1 (default: a free one)")
    start.add_argument("--detach", action="store_true", help="run in the background; stop with `harness local stop`")
    start.add_argument("--slots", type=int, default=None,
                       help="native engine: requests decoded together in one batch (default 1; see docs/local-model.md)")
    start.add_argument("--n-ctx", type=int, default=None,
                       help="context length in tokens (default: 2048 per slot on the native engine, 4096 on the compiled one)")
    for action in (start, actions.add_parser("stop", help="stop a running endpoint"),
                   actions.add_parser("status", help="print base_url and pid of a running endpoint")):
        action.add_argument("--model", default=local.DEFAULT_MODEL, help="embedded model name (default %(default)s)")
    parser.set_defaults(func=_handle, action=None)


def _handle(args: argparse.Namespace) -> int:
    if args.action == "start":
        return _start(args)
    if args.action == "stop":
        return _stop(args)
    if args.action == "status":
        return _status(args)
    raise UsageError("choose an action: harness local start|stop|status", key="local")


def _check_port(port: int | None) -> None:
    if port is not None and not 1 <= port <= 65535:
        raise UsageError(f"must be between 1 and 65535, not {port}", key="--port")


def _start(args: argparse.Namespace) -> int:
    _check_port(args.port)
    if args.n_ctx is not None and args.n_ctx < 16:
        raise UsageError(f"must be at least 16, not {args.n_ctx}", key="--n-ctx")
    if args.slots is not None and not 1 <= args.slots <= 64:
        raise UsageError(f"must be between 1 and 64, not {args.slots}", key="--slots")
    if args.detach:
        endpoint = local.start_detached(args.model, port=args.port, n_ctx=args.n_ctx, slots=args.slots)
        print(f"harness: {endpoint.model} runs at {endpoint.base_url} (pid {endpoint.pid}); "
              "stop it with: harness local stop", file=sys.stderr)
        print(endpoint.base_url)
        return 0
    running = local.status(args.model)
    if running is not None:
        raise UsageError(f"{args.model} already runs at {running.base_url} (pid {running.pid}); "
                         "stop it with: harness local stop", key="local start")
    with local.local_endpoint(args.model, port=args.port, reuse=False, n_ctx=args.n_ctx, slots=args.slots) as endpoint:
        local.write_pid_file(endpoint)
        try:
            print(f"harness: {endpoint.model} runs at {endpoint.base_url} (pid {endpoint.pid}); "
                  "Ctrl-C stops it", file=sys.stderr)
            print(endpoint.base_url, flush=True)
            local.wait_until_gone(endpoint.pid)
            print(f"harness: the local model stopped (log: {endpoint.log_file})", file=sys.stderr)
        except KeyboardInterrupt:
            print("harness: stopping the local model", file=sys.stderr)
        finally:
            local.pid_file(args.model).unlink(missing_ok=True)
    return 0


def _stop(args: argparse.Namespace) -> int:
    endpoint = local.stop(args.model)
    if endpoint is None:
        print(f"harness: {args.model} is not running", file=sys.stderr)
        return 1
    print(f"harness: stopped {endpoint.model} (pid {endpoint.pid})", file=sys.stderr)
    return 0


def _status(args: argparse.Namespace) -> int:
    endpoint = local.status(args.model)
    if endpoint is None:
        print(f"harness: {args.model} is not running", file=sys.stderr)
        return 1
    print(f"model={endpoint.model} base_url={endpoint.base_url} pid={endpoint.pid}")
    return 0
