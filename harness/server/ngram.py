"""The built-in language model: a word-level 9-gram with Witten-Bell interpolation, chat-style.

Trained at start-up (~1.5 s on a loaded 2-core machine, as long as the plain 8-gram it replaced) on the text in `harness/server/data/` (see `corpus.py`): prose,
country facts, few-shot lists, arithmetic and counting, plus the same material as chat turns
(`<s> prompt <assistant> answer </s>`: "Country: Italy\nCapital:" -> " Rome", "4 * 12 =" -> " 48",
"Tell me something." -> a prose line). Every token of the vocabulary (~4,000) has a non-zero
probability except `<s>`, `<unk>` and `<assistant>` (logit -inf), so the distributions are
smooth and sampling parameters have measurable effects.

    P_0(w)    = uniform over the vocabulary (without <s>, <unk>, <assistant>)
    P_k(w|h)  = (c(h, w) + T(h) * P_{k-1}(w|h')) / (c(h) + T(h))     h = last k tokens
                T(h) = number of distinct words seen after h; unseen h: P_k = P_{k-1}

A chat is rendered as `<s>` + the message contents joined by newlines + `<assistant>`: the model
answers rather than continues the prompt's last word. While it answers, its distribution is
mixed with a topic model (`harness.server.topic`): the prose lines that share the rarest words
with the prompt (or, when none does and the prompt's form is unknown, three general lines such as
"Good questions are often more useful than quick answers."), as a small n-gram that the answer can follow or leave,

    P(w) = (1 - lam) * P_8gram(w | context) + lam * P_topic(w | answer so far)

with lam = 0.05 / 0.6 / 0.6 / 0.7 when the last 0 / 1 / 2 / 3 answer tokens were seen in the
topic text, x 0.3 for the whole answer when the 9-gram already knows the prompt's form (its
first answer token has probability >= 0.5: a few-shot "Capital:", "7 + 5 =", "What is the
capital of Japan?"). The first answer token is never `</s>`: every answer is non-empty. An
answer ends with `</s>`, which the model emits at the end of a sentence or a short answer.
Token ids given to `start` without a trailing `<assistant>` are continued as plain text.
"""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from harness.server.corpus import build_corpus, chat_pairs, prose_paragraphs
from harness.server.tokenizer import ASSISTANT, BOS, EOS, UNK, WordTokenizer
from harness.server.topic import Retriever, TopicModel

__all__ = ["DEFAULT_MODEL_NAME", "NGramModel", "NGramSession", "default_model"]

DEFAULT_MODEL_NAME = "harness/ngram"
_Entry = tuple[np.ndarray, np.ndarray, float, float]  # ids, counts, total, distinct
_TOPIC_WEIGHT = (0.05, 0.6, 0.6, 0.7)  # lam by the number of answer tokens the topic text matches
_FALLBACK_LINES = ("Good questions are", "A short answer is", "I think so.")  # the topic of an unknown prompt
_KNOWN_FORM = 0.5  # the 9-gram's best first answer token this likely: the prompt's form is known
_KNOWN_FORM_DAMPING = 0.3
_Topic = tuple[int, float, TopicModel] | None  # (cache id, lam scale, n-gram of the retrieved lines)


class NGramModel:
    """A `LanguageModel` (harness.server.model) backed by interpolated n-gram counts."""

    blocking = False

    def __init__(self, name: str = DEFAULT_MODEL_NAME, *, order: int = 9, cache_size: int = 4096) -> None:
        self.name = name
        self.order = order
        documents = build_corpus()
        pairs = chat_pairs()
        self.tokenizer = WordTokenizer.from_corpus([*documents, *(q + a for q, a, _ in pairs)])
        self.vocab_size = self.tokenizer.vocab_size
        self.eos_token_ids = frozenset({EOS})
        encode = self.tokenizer.encode
        sequences = [([BOS, *encode(doc), EOS], 1) for doc in documents]
        sequences += [([BOS, *encode(q), ASSISTANT, *encode(a), EOS], w) for q, a, w in pairs]
        self._tables = _count_contexts(sequences, order)
        self._unigram = _unigram(sequences, self.vocab_size)
        self._unigram32 = self._unigram.astype(np.float32)
        paragraphs = prose_paragraphs()
        self._retriever = Retriever(paragraphs)
        self._paragraphs = paragraphs
        self._fallback = tuple(i for i, line in enumerate(paragraphs) if line.startswith(_FALLBACK_LINES))
        self._topics: dict[tuple[int, ...], _Topic] = {}  # prompt ids -> topic
        self._topic_ids: dict[tuple[tuple[int, ...], float], int] = {}  # (line ids, scale) -> cache id
        self._entries: dict[tuple[int, ...], _Entry] = {}
        self._cache: dict[tuple[Any, ...], np.ndarray] = {}
        self._context_size = order - 1
        self._aliases: dict[tuple[int, ...], tuple[int, ...]] = {}  # context tail -> cache key
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def render_chat(self, messages: Sequence[dict[str, Any]]) -> list[int]:
        """`<s>` + the message contents joined by newlines (trailing spaces dropped) + `<assistant>`."""
        text = "\n".join(_content_text(m.get("content")) for m in messages).rstrip(" \t")
        return [BOS, *self.tokenizer.encode(text), ASSISTANT]

    def token_text(self, token_id: int) -> str:
        """The text piece of one token."""
        return self.tokenizer.token_text(token_id)

    def detokenize(self, token_ids: Sequence[int]) -> str:
        """The text of a token sequence."""
        return self.tokenizer.decode(token_ids)

    def start(self, prompt_ids: Sequence[int]) -> NGramSession:
        """Begin a generation after the prompt."""
        return NGramSession(self, prompt_ids)

    def topic_for(self, prompt_ids: Sequence[int]) -> _Topic:
        """The topic model of a prompt: the retrieved lines; when none shares a content word, the
        fallback lines, unless the 9-gram knows the prompt's form (arithmetic: no topic at all)."""
        key = tuple(prompt_ids)
        if key in self._topics:
            return self._topics[key]
        first = self._ngram_probs(self._effective_context((*key[-self._context_size + 1 :], ASSISTANT)))
        first[EOS] = 0.0
        known = float(first.max()) >= _KNOWN_FORM * float(first.sum())
        found = self._retriever.find(self.tokenizer.decode(prompt_ids)) or (() if known else self._fallback)
        topic: _Topic = None
        if found:
            lines = [self._paragraphs[i] for i in found]
            answers = [self.tokenizer.encode(" " + " ".join(lines[start:])) for start in range(len(lines))]
            scale = _KNOWN_FORM_DAMPING if known else 1.0
            with self._lock:
                topic_id = self._topic_ids.setdefault((found, scale), len(self._topic_ids))
            topic = (topic_id, scale, TopicModel(answers, self.vocab_size))
        with self._lock:
            if len(self._topics) >= self._cache_size:
                self._topics.pop(next(iter(self._topics)), None)
            self._topics[key] = topic
        return topic

    def logits_for(self, context: Sequence[int], topic: _Topic = None, answer: Sequence[int] = ()) -> np.ndarray:
        """Read-only float32 log-probabilities of the next token after `context`.

        `answer` is `<assistant>` + the tokens generated so far (empty for plain continuation);
        `topic` the prompt's topic model. Cached under the longest suffix of the context seen in
        training (and the topic's matched context), so the same array object comes back for
        equivalent contexts.
        """
        tail = tuple(context[-self._context_size :])
        base = self._aliases.get(tail)  # plain dicts: reads need no lock
        if base is None:
            base = self._effective_context(tail)
            with self._lock:
                if len(self._aliases) >= 16 * self._cache_size:
                    self._aliases.pop(next(iter(self._aliases)), None)
                self._aliases[tail] = base
        first = len(answer) == 1
        if topic is None:
            key: tuple[Any, ...] = (base, first)
            matched = None
        else:
            matched = topic[2].match(answer)
            key = (base, first, topic[0], matched)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        logits = self._compute(base, first, topic, matched)
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

    def _compute(self, base: tuple[int, ...], first: bool, topic: _Topic, matched: tuple[int, ...] | None) -> np.ndarray:
        """Both interpolations as a scaled floor plus sparse terms: one full-vocabulary pass."""
        floor, terms = self._ngram_terms(base)
        weight = 0.0
        if topic is not None and matched is not None:
            weight = _TOPIC_WEIGHT[len(matched)] * topic[1]
        probs = self._unigram32 * np.float32(floor * (1.0 - weight))  # float32: half the memory traffic
        for ids, values in terms:
            probs[ids] += values * (1.0 - weight) if weight else values
        if weight and topic is not None and matched is not None:
            for ids, values in topic[2].terms(matched):
                probs[ids] += values * weight
        if first:  # an answer is never empty
            probs[EOS] = 0.0
            probs /= probs.sum(dtype=np.float64)
        with np.errstate(divide="ignore"):
            logits: np.ndarray = np.log(probs, out=probs)
        logits.flags.writeable = False
        return logits

    def _ngram_probs(self, key: tuple[int, ...]) -> np.ndarray:
        """P_k(.|key) as a dense float64 array."""
        floor, terms = self._ngram_terms(key)
        probs = self._unigram * floor
        for ids, values in terms:
            probs[ids] += values
        return probs

    def _ngram_terms(self, key: tuple[int, ...]) -> tuple[float, list[tuple[np.ndarray, np.ndarray]]]:
        """P_k(.|key) = floor * P_1 + sum of the sparse terms (Witten-Bell, longest context first)."""
        entries = []
        for k in range(1, len(key) + 1):
            entry = self._entry(key[-k:])
            if entry is None:
                break
            entries.append(entry)
        floor, terms = 1.0, []
        for ids, counts, total, distinct in reversed(entries):
            terms.append((ids, counts * (floor / (total + distinct))))
            floor *= distinct / (total + distinct)
        return floor, terms

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
    """One generation: the growing context (and the answer so far, in chat mode)."""

    def __init__(self, model: NGramModel, prompt_ids: Sequence[int]) -> None:
        self._model = model
        self._context = list(prompt_ids)
        chat = bool(prompt_ids) and prompt_ids[-1] == ASSISTANT
        self._answer: list[int] = [ASSISTANT] if chat else []
        self._topic = model.topic_for(prompt_ids[:-1]) if chat else None

    def logits(self) -> np.ndarray:
        """Next-token logits (read-only)."""
        return self._model.logits_for(self._context, self._topic, self._answer)

    def advance(self, token_id: int) -> None:
        """Append a token."""
        self._context.append(token_id)
        if self._answer:
            self._answer.append(token_id)

    def close(self) -> None:
        """Nothing to release."""


def _content_text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


_NEVER_NEXT = frozenset({BOS, ASSISTANT})


def _count_contexts(sequences: list[tuple[list[int], int]], order: int) -> list[dict[tuple[int, ...], dict[int, int]]]:
    """tables[k][context of length k] = {next token: count}, k = 1 .. order-1 (weighted sequences)."""
    by_weight: defaultdict[int, Counter[tuple[int, ...]]] = defaultdict(Counter)
    for seq, weight in sequences:
        for k in range(1, order):
            by_weight[weight].update(zip(*(seq[j:] for j in range(k + 1))))
    grams = by_weight.pop(1, Counter())
    for weight, counter in by_weight.items():
        for gram, count in counter.items():
            grams[gram] += weight * count
    tables: list[dict[tuple[int, ...], dict[int, int]]] = [{} for _ in range(order)]
    grouped: list[defaultdict[tuple[int, ...], dict[int, int]]] = [defaultdict(dict) for _ in range(order)]
    for gram, count in grams.items():
        if gram[-1] not in _NEVER_NEXT:
            grouped[len(gram) - 1][gram[:-1]][gram[-1]] = count
    for k in range(1, order):
        tables[k] = dict(grouped[k])
    return tables


def _unigram(sequences: list[tuple[list[int], int]], vocab_size: int) -> np.ndarray:
    """P_1: Witten-Bell mix of unigram counts and a uniform distribution (no <s>, <unk>, <assistant>)."""
    counts = np.zeros(vocab_size, dtype=np.float64)
    for seq, weight in sequences:
        np.add.at(counts, np.asarray(seq[1:], dtype=np.int64), float(weight))
    counts[ASSISTANT] = 0.0
    uniform = np.full(vocab_size, 1.0 / (vocab_size - 3))
    uniform[[BOS, UNK, ASSISTANT]] = 0.0
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
