"""The training text of the built-in n-gram model, built at start-up from files we ship.

Documents come from `data/prose.txt` (hand-written prose, one paragraph a line),
`data/countries.tsv` (country, capital, continent, language, currency; turned into facts,
questions and few-shot lists) and generated arithmetic ("7 + 5 = 12") and counting
("The number after 41 is 42.") statements. Everything is deterministic.

`chat_pairs()` turns the same material into chat turns (prompt, answer) for the chat format of
`NGramModel.render_chat` (`<s>` prompt `<assistant>` answer `</s>`): few-shot and question forms
of the facts ("Country: Italy\nCapital:" -> " Rome", "4 * 12 =" -> " 48") and the prose lines
as answers to open requests. `prose_paragraphs()` is what open answers are retrieved from.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources

__all__ = ["FACT_WEIGHT", "Country", "build_corpus", "chat_pairs", "load_countries", "prose_paragraphs"]


@dataclass(frozen=True)
class Country:
    """One row of data/countries.tsv."""

    name: str
    capital: str
    continent: str
    language: str
    currency: str


def _data_lines(name: str) -> list[str]:
    text = resources.files("harness.server").joinpath("data", name).read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line.strip() and not line.startswith("#")]


def load_countries() -> list[Country]:
    """The shipped country table."""
    return [Country(*line.split("\t")) for line in _data_lines("countries.tsv")]


def _country_docs(countries: list[Country]) -> Iterator[str]:
    for c in countries:
        yield f"The capital of {c.name} is {c.capital}."
        yield f"{c.capital} is the capital of {c.name}."
        yield f"What is the capital of {c.name}? The capital of {c.name} is {c.capital}."
        yield f"Q: What is the capital of {c.name}?\nA: {c.capital}"
        yield f"Question: What is the capital of {c.name}?\nAnswer: {c.capital}"
        yield f"Country: {c.name}\nCapital: {c.capital}"
        yield (
            f"{c.name} is a country in {c.continent}. People in {c.name} speak {c.language},"
            f" and the currency of {c.name} is the {c.currency}."
        )
        yield f"The official language of {c.name} is {c.language}."
    rng = random.Random(7)
    for _ in range(3):
        shuffled = countries[:]
        rng.shuffle(shuffled)
        for start in range(0, len(shuffled), 5):
            group = shuffled[start : start + 5]
            yield "\n".join(f"{c.name}: {c.capital}" for c in group)


def _arithmetic_docs() -> Iterator[str]:
    for a in range(21):
        for b in range(21):
            yield f"{a} + {b} = {a + b}"
            if a >= b:
                yield f"{a} - {b} = {a - b}"
    for a in range(13):
        for b in range(13):
            yield f"{a} * {b} = {a * b}"
            yield f"{a} x {b} = {a * b}"
    for a in range(11):
        for b in range(11):
            yield f"What is {a} + {b}? {a} + {b} = {a + b}."
            yield f"Q: What is {a} + {b}?\nA: {a + b}"


def _counting_docs() -> Iterator[str]:
    for n in range(500):
        yield f"The number after {n} is {n + 1}."
    for start in range(0, 200, 10):
        yield ", ".join(str(n) for n in range(start, start + 10)) + "."


def build_corpus() -> list[str]:
    """Every training document, in a fixed order."""
    return [
        *_data_lines("prose.txt"),
        *_country_docs(load_countries()),
        *_arithmetic_docs(),
        *_counting_docs(),
    ]


def prose_paragraphs() -> list[str]:
    """The prose lines (one paragraph each), in file order."""
    return _data_lines("prose.txt")


_OPEN_REQUESTS = (
    "Tell me something.",
    "Write a sentence.",
    "Describe something you like.",
    "Tell me a fact?",
    "What can you tell me?",
    "Say something interesting",
)


def _country_pairs(countries: list[Country]) -> Iterator[tuple[str, str]]:
    for c in countries:
        yield f"What is the capital of {c.name}?", f" The capital of {c.name} is {c.capital}."
        yield f"Country: {c.name}\nCapital:", f" {c.capital}"
        yield f"Q: What is the capital of {c.name}?\nA:", f" {c.capital}"
        yield f"Question: What is the capital of {c.name}?\nAnswer:", f" {c.capital}"
        yield f"The capital of {c.name} is", f" {c.capital}."
        yield f"{c.name}:", f" {c.capital}"
        yield (
            f"Tell me about {c.name}.",
            (
                f" {c.name} is a country in {c.continent}. People in {c.name} speak {c.language},"
                f" and the currency of {c.name} is the {c.currency}."
            ),
        )
        yield f"What language do people speak in {c.name}?", f" People in {c.name} speak {c.language}."


def _arithmetic_pairs() -> Iterator[tuple[str, str]]:
    for a in range(21):
        for b in range(21):
            yield f"{a} + {b} =", f" {a + b}"
            yield f"{a} - {b} =", f" {a - b}"
            yield f"{a} * {b} =", f" {a * b}"
    for a in range(11):
        for b in range(11):
            yield f"What is {a} + {b}?", f" {a} + {b} = {a + b}."
            yield f"Q: What is {a} + {b}?\nA:", f" {a + b}"


def _prose_pairs(paragraphs: list[str]) -> Iterator[tuple[str, str]]:
    """Each line answers two open requests: alone, and followed by the next line (longer answers)."""
    for i, paragraph in enumerate(paragraphs):
        following = paragraphs[i + 1 : i + 2]
        yield _OPEN_REQUESTS[(2 * i) % len(_OPEN_REQUESTS)], f" {paragraph}"
        yield _OPEN_REQUESTS[(2 * i + 1) % len(_OPEN_REQUESTS)], " " + " ".join([paragraph, *following])


FACT_WEIGHT = 3  # a fact seen once gets about half of the probability under Witten-Bell, 3x ~3/4


def chat_pairs() -> list[tuple[str, str, int]]:
    """(prompt, answer, weight) chat turns, in a fixed order; answers start with a space.

    The weight is how many times the turn counts in training: FACT_WEIGHT for facts.
    """
    facts = [*_country_pairs(load_countries()), *_arithmetic_pairs()]
    return [*((q, a, 1) for q, a in _prose_pairs(prose_paragraphs())), *((q, a, FACT_WEIGHT) for q, a in facts)]
