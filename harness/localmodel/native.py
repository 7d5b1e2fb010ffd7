"""llama.cpp's own server code, in process, through the prebuilt `xllamacpp` wheel.

`NativeEngine` loads a GGUF into an `xllamacpp.Server`: several slots decode together in one
llama.cpp batch (continuous batching) and each slot re-uses the KV cache of the longest prompt
prefix it already holds; a host-RAM prompt cache, capped at `cache_ram_mib`, keeps more
prefixes. `complete(body)` answers one llama.cpp `/completion` body (blocking, thread-safe,
the GIL released while llama.cpp works): run it from several threads to fill the slots.

Sampling is llama.cpp's own sampler (xllamacpp exposes no per-step logits); harness's front
(`harness.localmodel.front`) validates each request and fixes the sampler order to harness's.

`native_server()` yields the base URL of llama.cpp's own HTTP server (`/v1/chat/completions`,
`/v1/completions`, `/completion`, …) for tests that want a real server nobody here wrote.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import TargetError
from harness.localmodel.gguf import INSTALL_HINT

log = logging.getLogger(__name__)

DEFAULT_SLOTS = 1  # sequences decoded together: 1 keeps seeded samples reproducible (docs/local-model.md)
DEFAULT_SLOT_CTX = 2048  # tokens of context per slot (the KV cache holds slots × this)
DEFAULT_CACHE_RAM_MIB = 256  # cap on the host-RAM prompt cache (llama.cpp's default is 8 GiB)


def available() -> bool:
    """True when the prebuilt engine (`xllamacpp`) is importable."""
    import importlib.util

    return importlib.util.find_spec("xllamacpp") is not None


def _import_xllamacpp() -> Any:
    try:
        import xllamacpp  # (no stubs: a Cython module)
    except ImportError:
        raise TargetError(f"xllamacpp is not installed; {INSTALL_HINT}") from None
    return xllamacpp


@dataclass(frozen=True)
class EngineOptions:
    """How the engine is laid out: slots, context, threads, prompt-cache cap."""

    slots: int = DEFAULT_SLOTS
    slot_ctx: int = DEFAULT_SLOT_CTX
    threads: int = 1
    cache_ram_mib: int = DEFAULT_CACHE_RAM_MIB


class NativeEngine:
    """One GGUF served by llama.cpp's server loop in this process."""

    def __init__(self, model_path: str | Path, *, name: str, options: EngineOptions | None = None) -> None:
        xllamacpp = _import_xllamacpp()
        opts = options or EngineOptions()
        self.name = name
        self.options = opts
        self.slot_ctx = opts.slot_ctx
        params = xllamacpp.CommonParams()
        params.model.path = str(model_path)
        params.n_parallel = opts.slots
        params.kv_unified = False  # one cache per slot: a unified one made each slot attend over all (measured 1.6x slower)
        params.n_ctx = opts.slots * opts.slot_ctx
        params.cont_batching = True
        params.cache_prompt = True
        params.cache_ram_mib = opts.cache_ram_mib
        params.swa_full = True  # sliding-window layers keep every token: a whole cached prompt is re-usable
        params.cpuparams.n_threads = opts.threads
        params.cpuparams_batch.n_threads = opts.threads
        params.warmup = False
        params.hostnames = ["127.0.0.1"]
        params.port = 0  # llama.cpp's own listener on a free loopback port (see `native_server`)
        try:
            self._server = xllamacpp.Server(params)
        except Exception as exc:  # noqa: BLE001 - the binding raises RuntimeError/ValueError variously
            raise TargetError(f"llama.cpp cannot load the model ({exc})", file=str(model_path)) from None
        self._closed = threading.Event()

    @property
    def base_url(self) -> str:
        """llama.cpp's own HTTP server, `http://127.0.0.1:PORT/v1`."""
        return str(self._server.listening_address).rstrip("/") + "/v1"

    def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        """Answer one llama.cpp `/completion` body; an error comes back as `{"error": {...}}`."""
        if self._closed.is_set():
            raise RuntimeError("the engine is closed")
        result = self._server.handle_completions(body)
        if not isinstance(result, dict):
            raise TypeError(f"llama.cpp answered {type(result).__name__}, not an object")
        return result

    def stream(self, body: dict[str, Any], on_chunk: Callable[[dict[str, Any]], None]) -> None:
        """Generate `body` streamed: `on_chunk` gets each llama.cpp chunk on this thread (blocking)."""
        if self._closed.is_set():
            raise RuntimeError("the engine is closed")
        self._server.handle_completions({**body, "stream": True}, on_chunk)

    def close(self) -> None:
        """Stop llama.cpp's loop and free the model (the Server frees it when collected)."""
        self._closed.set()
        self._server = None


def load(name: str = "gemma-3-270m", options: EngineOptions | None = None) -> NativeEngine:
    """The embedded model `name` on the prebuilt engine, its GGUF assembled into the cache first."""
    from harness.localmodel.gguf import gguf_path

    _import_xllamacpp()
    return NativeEngine(gguf_path(name), name=name, options=options)


@contextmanager
def native_server(name: str = "gemma-3-270m", *, slots: int = 2, slot_ctx: int = 1024) -> Iterator[str]:
    """llama.cpp's own OpenAI-compatible server on 127.0.0.1 for the `with` block; yields its base URL.

    The model is a base model and no chat template is set, so `/v1/chat/completions` renders
    with llama.cpp's fallback template (answers are poor but well-formed); `/v1/completions`
    takes the prompt as is.
    """
    engine = load(name, EngineOptions(slots=slots, slot_ctx=slot_ctx))
    try:
        yield engine.base_url
    finally:
        engine.close()


__all__ = [
    "DEFAULT_CACHE_RAM_MIB",
    "DEFAULT_SLOTS",
    "DEFAULT_SLOT_CTX",
    "EngineOptions",
    "NativeEngine",
    "available",
    "load",
    "native_server",
]
