"""The built-in language model: a word-level 5-gram with Witten-Bell interpolation.

Trained at start-up (~0.2 s) on the text in `harness/server/data/` (see `corpus.py`): prose,
country facts ("The capital of Japan is" -> " Tokyo"), few-shot lists ("France: Paris\\nJapan:"),
arithmetic ("7 + 5 =" -> " 12") and counting. Every token of the vocabulary (~4,000) has a
non-zero probability except `<s>` and `<unk>` (logit -inf), so the distributions are smooth
and sampling parameters have measurable effects.

    P_0(w)    = uniform over the vocabulary (without <s>, <unk>)
    P_k(w|h)  = (c(h, w) + T(h) * P_{k-1}(w|h')) / (c(h) + T(h))     h = last k tokens
                T(h) = number of distinct words seen after h; unseen h: P_k = P_{k-1}

A prompt is the contents of the chat messages joined by newlines; a generation ends with
`</s>`, which the model emits at the end of a sentence or an answer.
"""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from typing import Any, Sequence

import numpy as np

from harness.server.corpus import build_corpus
from harness.server.tokenizer import BOS, EOS, UNK, WordTokenizer

__all__ = ["DEFAULT_MODEL_NAME", "NGramModel", "NGramSession", "default_model"]

DEFAULT_MODEL_NAME = "harness/ngram"
_Entry = tuple[np.ndarray, np.ndarray, float, float]  # ids, counts, total, distinct


class NGramModel:
    """A `LanguageModel` (harness.server.model) backed by interpolated n-gram counts."""

    blocking = False

    def __init__(self, name: str = DEFAULT_MODEL_NAME, *, order: int = 8, cache_size: int = 4096) -> None:
        self.name = name
        self.order = order
        documents = build_corpus()
        self.tokenizer = WordTokenizer.from_corpus(documents)
        self.vocab_size = self.tokenizer.vocab_size
        self.eos_token_ids = frozenset({EOS})
        sequences = [[BOS, *self.tokenizer.encode(doc), EOS] for doc in documents]
        self._tables = _count_contexts(sequences, order)
        self._unigram = _unigram(sequences, self.vocab_size)
        self._entries: dict[tuple[int, ...], _Entry] = {}
        self._cache: dict[tuple[int, ...], np.ndarray] = {}
        self._context_size = order - 1
        self._aliases: dict[tuple[int, ...], tuple[int, ...]] = {}  # context tail -> cache key
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def render_chat(self, messages: Sequence[dict[str, Any]]) -> list[int]:
        """`<s>` + the message contents joined by newlines (trailing spaces dropped)."""
        text = "\n".join(_content_text(m.get("content")) for m in messages).rstrip(" \t")
        return [BOS, *self.tokenizer.encode(text)]

    def token_text(self, token_id: int) -> str:
        """The text piece of one token."""
        return self.tokenizer.token_text(token_id)

    def detokenize(self, token_ids: Sequence[int]) -> str:
        """The text of a token sequence."""
        return self.tokenizer.decode(token_ids)

    def start(self, prompt_ids: Sequence[int]) -> "NGramSession":
        """Begin a generation after the prompt."""
        return NGramSession(self, prompt_ids)

    def logits_for(self, context: Sequence[int]) -> np.ndarray:
        """Read-only float32 log-probabilities of the next token after `context`.

        Cached under the longest suffix of the context seen in training (the distribution
        depends on nothing else), so the same array object comes back for equivalent contexts.
        """
        tail = tuple(context[-self._context_size :])
        key = self._aliases.get(tail)  # plain dicts: reads need no lock
        if key is None:
            key = self._effective_context(tail)
            with self._lock:
                if len(self._aliases) >= 16 * self._cache_size:
                    self._aliases.pop(next(iter(self._aliases)), None)
                self._aliases[tail] = key
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        logits = self._compute(key)
        with self._lock:
            if len(self._cache) >= self._cache_size:  # evict the oldest entry (FIFO)
                self._cache.pop(next(iter(self._cache)), None)
            self._cache[key] = logits
        return logits

    def _effective_context(self, tail: tuple[int, ...]) -> tuple[int, ...]:
        """The longest suffix of `tail` that was seen in training."""
        seen = 0
        tables = self._tables
        for k in range(1, len(tail) + 1):
            if tail[-k:] not in tables[k]:
                break  # a longer context containing an unseen one is unseen too
            seen = k
        return tail[len(tail) - seen :]

    def _compute(self, key: tuple[int, ...]) -> np.ndarray:
        probs = self._unigram.copy()
        for k in range(1, len(key) + 1):
            entry = self._entry(key[-k:])
            if entry is None:
                break
            ids, counts, total, distinct = entry
            probs *= distinct / (total + distinct)
            probs[ids] += counts / (total + distinct)
        with np.errstate(divide="ignore"):
            logits: np.ndarray = np.log(probs).astype(np.float32)
        logits.flags.writeable = False
        return logits

    def _entry(self, context: tuple[int, ...]) -> _Entry | None:
        """Counts of what followed `context` as arrays (converted on first use)."""
        entry = self._entries.get(context)
        if entry is not None:
            return entry
        followers = self._tables[len(context)].get(context)
        if not followers:
            return None  # not cached: unseen contexts are unbounded
        ids = np.fromiter(followers.keys(), dtype=np.int64, count=len(followers))
        counts = np.fromiter(followers.values(), dtype=np.float64, count=len(followers))
        entry = (ids, counts, float(counts.sum()), float(len(followers)))
        self._entries[context] = entry
        return entry


class NGramSession:
    """One generation: the growing context."""

    def __init__(self, model: NGramModel, prompt_ids: Sequence[int]) -> None:
        self._model = model
        self._context = list(prompt_ids)

    def logits(self) -> np.ndarray:
        """Next-token logits (read-only)."""
        return self._model.logits_for(self._context)

    def advance(self, token_id: int) -> None:
        """Append a token."""
        self._context.append(token_id)

    def close(self) -> None:
        """Nothing to release."""


def _content_text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def _count_contexts(sequences: list[list[int]], order: int) -> list[dict[tuple[int, ...], dict[int, int]]]:
    """tables[k][context of length k] = {next token: count}, k = 1 .. order-1."""
    grams: Counter[tuple[int, ...]] = Counter()
    for seq in sequences:
        for k in range(1, order):
            grams.update(zip(*(seq[j:] for j in range(k + 1))))
    tables: list[dict[tuple[int, ...], dict[int, int]]] = [{} for _ in range(order)]
    grouped: list[defaultdict[tuple[int, ...], dict[int, int]]] = [defaultdict(dict) for _ in range(order)]
    for gram, count in grams.items():
        grouped[len(gram) - 1][gram[:-1]][gram[-1]] = count
    for k in range(1, order):
        tables[k] = dict(grouped[k])
    return tables


def _unigram(sequences: list[list[int]], vocab_size: int) -> np.ndarray:
    """P_1: Witten-Bell mix of unigram counts and a uniform distribution (no <s>, <unk>)."""
    counts = np.zeros(vocab_size, dtype=np.float64)
    for seq in sequences:
        np.add.at(counts, np.asarray(seq[1:], dtype=np.int64), 1.0)
    uniform = np.full(vocab_size, 1.0 / (vocab_size - 2))
    uniform[[BOS, UNK]] = 0.0
    total, distinct = counts.sum(), float(np.count_nonzero(counts))
    unigram: np.ndarray = (counts + distinct * uniform) / (total + distinct)
    return unigram


_DEFAULT: NGramModel | None = None
_DEFAULT_LOCK = threading.Lock()


def default_model() -> NGramModel:
    """A process-wide shared `NGramModel` named `harness/ngram` (built once; for tests and tools)."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None:
            _DEFAULT = NGramModel()
        return _DEFAULT
