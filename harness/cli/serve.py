"""`harness serve`: the local reference endpoint (built-in n-gram model, fault injection)."""

from __future__ import annotations

import argparse
import errno
import os
import sys

from harness.errors import UsageError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `serve` command."""
    parser = subparsers.add_parser(
        "serve",
        help="run the local reference endpoint (OpenAI Chat Completions, seeded faults)",
        description="A strict, deterministic OpenAI-compatible endpoint backed by a small n-gram model. "
        "Prints its base URL on stdout once it listens; Ctrl-C stops it.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s)")
    parser.add_argument("--port", type=int, default=8000, help="port (default %(default)s; 0 = a free one)")
    parser.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY' (never printed)")
    parser.add_argument("--api-key-env", default=None, metavar="VAR", help="read the required key from this variable")
    parser.add_argument("--model", default=None, metavar="NAME", help="model name advertised and accepted (default harness/ngram)")
    parser.add_argument("--latency-ms", default=None, metavar="MS|MEAN:JITTER", help="delay before every answer, e.g. 50 or 50:20")
    parser.add_argument("--tokens-per-s", type=float, default=None, metavar="X", help="simulated generation speed")
    parser.add_argument("--faults", default=None, metavar="SPEC", help="e.g. 429=0.1,500=0.05,reset=0.02,timeout=0.01,garbage=0.01,stream_cut=0.01")
    parser.add_argument("--fault-seed", type=int, default=0, metavar="N", help="seed of the fault draws (default %(default)s)")
    parser.add_argument("--seed", type=int, default=None, metavar="N", help="seed for requests that send no seed (default: random)")
    parser.add_argument("--retry-after", type=float, default=1.0, metavar="S", help="Retry-After of injected 429s, seconds (default %(default)s)")
    parser.add_argument("--reject-unknown", action="store_true", help="refuse unknown request fields instead of ignoring them")
    parser.add_argument(
        "--logprobs-mode", choices=("raw", "processed"), default="raw",
        help="logprobs from the raw distribution (default, like OpenAI/vLLM) or after penalties and temperature",
    )  # fmt: skip
    parser.add_argument("--ignore", default=None, metavar="PARAM,...", help="accept these body fields and drop them (tests of `harness probe`)")
    parser.add_argument("--refuse", action="append", default=[], metavar="PARAM=VALUE", help="refuse a field's value (VALUE * = any); repeatable")
    parser.add_argument("--refuse-status", type=int, default=400, metavar="STATUS", help="HTTP status of --refuse: 400 (default), 422 or 500")
    parser.add_argument("--dialect", default="seed", metavar="NAME", help="validate like: seed (default), openai, vllm, sglang, llama.cpp, ollama")
    parser.set_defaults(func=_handle)


def _api_key(args: argparse.Namespace) -> str | None:
    if args.api_key and args.api_key_env:
        raise UsageError("give --api-key or --api-key-env, not both", key="--api-key-env")
    if args.api_key_env:
        key = os.environ.get(args.api_key_env)
        if not key:
            raise UsageError(f"the environment variable {args.api_key_env} is not set or empty", key="--api-key-env")
        return key
    return args.api_key or None


def _check(args: argparse.Namespace) -> None:
    if not 0 <= args.port <= 65535:
        raise UsageError(f"must be between 0 and 65535, not {args.port}", key="--port")
    if args.tokens_per_s is not None and not args.tokens_per_s > 0:
        raise UsageError(f"must be a number above 0, not {args.tokens_per_s}", key="--tokens-per-s")
    if not args.retry_after >= 0:
        raise UsageError(f"must be 0 or more seconds, not {args.retry_after}", key="--retry-after")
    if args.model is not None and not args.model.strip():
        raise UsageError("must not be empty", key="--model")


def _handle(args: argparse.Namespace) -> int:
    # Imported here so that other commands do not pay for aiohttp and the model.
    from harness.server.app import create_app, serve
    from harness.server.faults import FaultSpec, Latency
    from harness.server.misbehave import Misbehaviour
    from harness.server.ngram import DEFAULT_MODEL_NAME, NGramModel

    _check(args)
    misbehaviour = Misbehaviour.parse(args.ignore, args.refuse, args.refuse_status, args.dialect)
    faults = FaultSpec.parse(args.faults) if args.faults else None
    latency = Latency.parse(args.latency_ms) if args.latency_ms else None
    api_key = _api_key(args)
    name = args.model or DEFAULT_MODEL_NAME
    app = create_app(
        {name: NGramModel(name)},
        api_key=api_key,
        faults=faults,
        fault_seed=args.fault_seed,
        latency=latency,
        tokens_per_s=args.tokens_per_s,
        seed=args.seed,
        retry_after_s=args.retry_after,
        reject_unknown=args.reject_unknown,
        logprobs_mode=args.logprobs_mode,
        misbehaviour=misbehaviour,
    )

    def ready(base_url: str) -> None:
        extras = [f"model {name}", "auth on" if api_key else "no auth"]
        if faults:
            extras.append(f"faults {faults}")
        if misbehaviour:
            extras.append(misbehaviour.describe())
        print(f"harness: serving at {base_url} ({', '.join(extras)}); Ctrl-C stops", file=sys.stderr)
        print(base_url, flush=True)

    try:
        serve(app, host=args.host, port=args.port, on_ready=ready)
    except OSError as err:
        # only a taken or privileged port is the port's fault; anything else is the address's
        flag = "--port" if err.errno in (errno.EADDRINUSE, errno.EACCES) else "--host"
        raise UsageError(f"cannot listen on {args.host}:{args.port}: {err.strerror or err}", key=flag) from None
    return 0
