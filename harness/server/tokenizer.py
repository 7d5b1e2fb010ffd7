"""A word-level tokenizer with a character fallback, for the built-in n-gram model.

A token is a word, a number, one punctuation mark (each optionally with one leading space,
GPT-style: `" Paris"`), a newline or a run of other whitespace. Pieces not in the vocabulary are
spelled with single-character tokens, so `decode(encode(text)) == text` for any printable ASCII
text; other characters become `<unk>`. Id 3, `<assistant>`, marks where the model's answer
begins in a rendered chat; no text encodes to it and it is never generated.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Iterable, Sequence

__all__ = ["ASSISTANT", "BOS", "EOS", "SPECIAL_IDS", "UNK", "WordTokenizer", "split_pieces"]

BOS, EOS, UNK, ASSISTANT = 0, 1, 2, 3
SPECIAL_IDS = (BOS, EOS, UNK, ASSISTANT)
_SPECIAL_TEXT = ("", "", "\ufffd", "")
_PIECE = re.compile(r" ?[A-Za-z]+(?:'[A-Za-z]+)?| ?\d+| ?[^\sA-Za-z\d]|\n|[^\S\n]+")


def split_pieces(text: str) -> list[str]:
    """Split text into candidate tokens (before vocabulary lookup)."""
    return _PIECE.findall(text)


def _base_pieces() -> list[str]:
    """Single characters (with and without a leading space): the fallback alphabet."""
    chars = string.ascii_letters + string.digits + string.punctuation
    return ["\n", " ", "\t", *chars, *(" " + c for c in chars)]


class WordTokenizer:
    """Maps text to token ids and back; ids 0-3 are `<s>`, `</s>`, `<unk>`, `<assistant>`."""

    def __init__(self, pieces: Sequence[str]) -> None:
        self._texts: list[str] = list(_SPECIAL_TEXT)
        self._ids: dict[str, int] = {}
        for piece in pieces:
            if piece not in self._ids:
                self._ids[piece] = len(self._texts)
                self._texts.append(piece)

    @classmethod
    def from_corpus(cls, documents: Iterable[str]) -> WordTokenizer:
        """Vocabulary = fallback alphabet + every piece of the corpus, most frequent first."""
        counts: Counter[str] = Counter()
        for doc in documents:
            counts.update(split_pieces(doc))
        ordered = sorted(counts, key=lambda piece: (-counts[piece], piece))
        return cls([*_base_pieces(), *ordered])

    @property
    def vocab_size(self) -> int:
        """Number of token ids."""
        return len(self._texts)

    def encode(self, text: str) -> list[int]:
        """Token ids of `text` (no BOS/EOS added)."""
        ids: list[int] = []
        lookup = self._ids
        for piece in split_pieces(text):
            token = lookup.get(piece)
            if token is not None:
                ids.append(token)
            else:
                ids.extend(self._spell(piece))
        return ids

    def _spell(self, piece: str) -> list[int]:
        """Fallback: one token per character (a leading space stays with the first one)."""
        spaced = len(piece) > 1 and piece[0] == " " and not piece[1].isspace()
        chars = [piece[:2], *piece[2:]] if spaced else list(piece)
        return [self._ids.get(c, UNK) for c in chars]

    def token_text(self, token_id: int) -> str:
        """The text of one token ("" for `<s>`, `</s>`, `<assistant>`)."""
        return self._texts[token_id]

    def decode(self, token_ids: Sequence[int]) -> str:
        """The text of a token sequence."""
        texts = self._texts
        return "".join(texts[i] for i in token_ids)
