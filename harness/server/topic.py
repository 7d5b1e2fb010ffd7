"""Keeping open answers on topic: retrieve prose lines that share words with the prompt.

`Retriever.find(text)` scores every prose line by the inverse document frequency of the
content words (lower-cased, crudely singularized, stop words dropped) it shares with the
prompt (x1.5 when the word is among a line's first five: what the line is about) and returns
up to three of the best lines (those scoring at least half the best).
`TopicModel` is a small interpolated n-gram (order 4, Witten-Bell) over those lines joined into
one answer, `<assistant> line line line </s>`; `NGramModel` mixes it into its own distribution
while an answer is generated (see ngram.py), so "Tell me about the sea." is answered with
sentences about the sea, and sampling can still wander off the retrieved text.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Sequence

import numpy as np

from harness.server.tokenizer import ASSISTANT, EOS

__all__ = ["Retriever", "TopicModel", "content_words"]

_WORD = re.compile(r"[A-Za-z]+")
_STOP = frozenset(
    ["a", "an", "the", "and", "or", "but", "of", "to", "in", "on", "at", "for", "with", "from", "by", "about", "as", "is", "are", "was", "were", "be", "been", "being", "it", "its", "this", "that", "these", "those", "i", "you", "he", "she", "we", "they", "me", "my", "your", "our", "their", "his", "her", "him", "them", "what", "which", "who", "whom", "how", "why", "when", "where", "there", "here", "do", "does", "did", "can", "could", "would", "should", "will", "shall", "may", "might", "must", "not", "no", "yes", "so", "if", "then", "than", "too", "very", "just", "one", "two", "into", "out", "up", "down", "over", "under", "again", "more", "most", "some", "any", "each", "every", "all", "both", "few", "other", "such", "only", "own", "same", "also", "give", "write", "tell", "describe", "say", "make", "invent", "explain", "sentence", "line", "lines", "short", "idea", "name", "please", "something", "thing", "things", "let", "us", "like", "set", "made", "from"]
)
_TOPIC_ORDER = 4


def _stem(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def content_words(text: str) -> set[str]:
    """The lower-cased, singularized words of `text` that are not stop words (3+ letters)."""
    words = (w.lower() for w in _WORD.findall(text))
    return {_stem(w) for w in words if len(w) >= 3 and w not in _STOP}


class Retriever:
    """Finds the prose lines that share the rarest words with a prompt."""

    def __init__(self, paragraphs: Sequence[str], *, top: int = 3) -> None:
        self.paragraphs = list(paragraphs)
        self._top = top
        self._index: defaultdict[str, list[int]] = defaultdict(list)
        self._leading: list[set[str]] = []  # content words among each line's first five words
        for i, paragraph in enumerate(self.paragraphs):
            for word in content_words(paragraph):
                self._index[word].append(i)
            self._leading.append(content_words(" ".join(paragraph.split()[:5])))
        n = len(self.paragraphs)
        self._idf = {w: math.log((n + 1) / (len(ids) + 0.5)) for w, ids in self._index.items()}

    def find(self, text: str) -> tuple[int, ...]:
        """Indices (ascending) of the best-matching lines; () when no content word matches."""
        scores: defaultdict[int, float] = defaultdict(float)
        for word in content_words(text):
            weight = self._idf.get(word, 0.0)
            for i in self._index.get(word, ()):
                scores[i] += weight * (1.5 if word in self._leading[i] else 1.0)
        if not scores:
            return ()
        best = max(scores.values())
        ranked = sorted((i for i, s in scores.items() if s >= 0.5 * best), key=lambda i: (-scores[i], i))
        return tuple(sorted(ranked[: self._top]))


_Entry = tuple[np.ndarray, np.ndarray, float, float]  # follower ids, counts, total, distinct


class TopicModel:
    """An order-4 Witten-Bell n-gram over answers made of the retrieved lines.

    Each answer is `<assistant>` + lines i, i+1, ... + `</s>`, so an answer may open with any of
    the lines. The first token comes from the lines' first words only (no backoff to the topic's
    unigram): an answer does not start in the middle of a sentence.
    """

    def __init__(self, answers: Sequence[Sequence[int]], vocab_size: int) -> None:
        sequences = [[ASSISTANT, *answer, EOS] for answer in answers]
        followers: list[defaultdict[tuple[int, ...], Counter[int]]] = [defaultdict(Counter) for _ in range(_TOPIC_ORDER)]
        for sequence in sequences:
            for k in range(1, _TOPIC_ORDER):
                for start in range(len(sequence) - k):
                    followers[k][tuple(sequence[start : start + k])][sequence[start + k]] += 1
        self._tables: list[dict[tuple[int, ...], _Entry]] = [{} for _ in range(_TOPIC_ORDER)]
        for k in range(1, _TOPIC_ORDER):
            for context, counter in followers[k].items():
                ids = np.fromiter(counter.keys(), dtype=np.int64, count=len(counter))
                counts = np.fromiter(counter.values(), dtype=np.float64, count=len(counter))
                self._tables[k][context] = (ids, counts, float(counts.sum()), float(len(counter)))
        unigram = np.zeros(vocab_size, dtype=np.float64)
        for sequence in sequences:
            np.add.at(unigram, np.asarray(sequence[1:], dtype=np.int64), 1.0)
        self._vocab_size = vocab_size
        self._unigram_ids = np.flatnonzero(unigram)
        self._unigram_values = unigram[self._unigram_ids] / unigram.sum()

    def match(self, answer: Sequence[int]) -> tuple[int, ...]:
        """The longest suffix of `answer` (up to 3 tokens) seen in the topic text."""
        seen: tuple[int, ...] = ()
        tables = self._tables
        for k in range(1, min(len(answer), _TOPIC_ORDER - 1) + 1):
            tail = tuple(answer[-k:])
            if tail not in tables[k]:
                break
            seen = tail
        return seen

    def terms(self, matched: tuple[int, ...]) -> list[tuple[np.ndarray, np.ndarray]]:
        """P(next | matched context) as sparse (ids, probabilities) terms that add up to it."""
        if matched == (ASSISTANT,):  # the first word of one of the lines
            ids, counts, total, _ = self._tables[1][matched]
            return [(ids, counts / total)]
        floor, terms = 1.0, []
        for k in range(len(matched), 0, -1):
            ids, counts, total, distinct = self._tables[k][matched[-k:]]
            terms.append((ids, counts * (floor / (total + distinct))))
            floor *= distinct / (total + distinct)
        terms.append((self._unigram_ids, self._unigram_values * floor))
        return terms

    def probs(self, matched: tuple[int, ...]) -> np.ndarray:
        """P(next | matched context), a dense float64 distribution over the vocabulary."""
        probs = np.zeros(self._vocab_size)
        for ids, values in self.terms(matched):
            np.add.at(probs, ids, values)
        return probs
