"""Scorers: compare a stored `content` to its `reference`, row by row, after the run.

Scores are computed from stored rows, so a run can be re-scored without re-running it.

The spec's `scoring` list holds either names or mappings::

    scoring:
      - exact_match                       # built-in, default options
      - {type: numeric, tolerance: 0.01}  # built-in with options
      - {type: regex, pattern: "^Paris$", name: paris}
      - mypkg.scorers:brevity             # custom "module:function"

Built-ins (all return 1.0 or 0.0; NaN when a reference is needed and missing):

- `exact_match`: `content.strip() == reference.strip()` (option `ignore_case`, default false).
- `normalized_match`: equal after SQuAD normalisation: lowercase, punctuation removed, the
  articles a/an/the removed, whitespace collapsed.
- `contains`: the reference occurs in the content (option `ignore_case`, default true).
- `regex`: `pattern` (required) is found in the content (`re.search`; option `fullmatch`
  to require the whole stripped content to match, option `ignore_case`). Needs no reference.
- `numeric`: the first number in the content equals the first number in the reference within
  `tolerance` (absolute, default 0) or `rel_tolerance` (relative to the reference, default 0).
  Numbers may carry a sign, thousands commas, decimals and an exponent. No number in the
  content scores 0; no number in the reference gives NaN.
- `json_valid`: the stripped content parses as JSON (a surrounding Markdown code fence is
  removed first unless `strip_fences: false`). Needs no reference.

A custom scorer `module:function` is called as `function(content, reference, row)` where `row`
is the result row as a dict, and returns a float or bool. Error rows score NaN for every scorer.

Custom scorers import and run code, so they come only from what the user passes: the spec given
to `harness run`/`plan`, or `--scoring` on the command line. A `scoring` list read from a run
directory (someone else's manifest) is resolved with `allow_custom=` the names given to
`--allow-scorer`; any other `module:function` there is refused before anything is imported.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import logging
import math
import re
import string
import sys
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import SpecError

if TYPE_CHECKING:  # pandas/numpy are imported where frames are scored: loading a spec stays fast
    import numpy as np
    import pandas as pd

log = logging.getLogger(__name__)

PairFn = Callable[[str, "str | None"], float]
CustomFn = Callable[[str, "str | None", dict[Any, Any]], Any]

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_NUMBER_RE = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?|[-+]?\.\d+(?:[eE][-+]?\d+)?")
_PUNCT = str.maketrans("", "", string.punctuation)
_ARTICLES_RE = re.compile(r"\b(a|an|the)\b")
_FENCE_RE = re.compile(r"^```[A-Za-z0-9_-]*\s*\n?(.*?)\n?```$", re.DOTALL)


@dataclass(frozen=True)
class Scorer:
    """One resolved scorer. `name` is the metric name (column in `score_frame`)."""

    name: str
    type: str
    options: Mapping[str, Any] = field(default_factory=dict)
    pair_fn: PairFn | None = None  # built-ins: (content, reference) -> score
    custom_fn: CustomFn | None = None  # custom: (content, reference, row) -> score
    needs_reference: bool = True

    @property
    def builtin(self) -> bool:
        return self.custom_fn is None


# --- built-in scoring functions -------------------------------------------------------------


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lowercase, drop punctuation and articles, collapse whitespace."""
    text = text.lower().translate(_PUNCT)
    text = _ARTICLES_RE.sub(" ", text)
    return " ".join(text.split())


def first_number(text: str) -> float | None:
    """The first number written in `text` ("-1,234.5e2" → -123450.0), or None."""
    match = _NUMBER_RE.search(text)
    if not match:
        return None
    try:
        return float(match.group(0).replace(",", ""))
    except ValueError:  # pragma: no cover - the regex only admits floats
        return None


def _exact(ignore_case: bool) -> PairFn:
    def score(content: str, reference: str | None) -> float:
        if reference is None:
            return math.nan
        a, b = content.strip(), reference.strip()
        if ignore_case:
            a, b = a.casefold(), b.casefold()
        return float(a == b)

    return score


def _normalized(content: str, reference: str | None) -> float:
    if reference is None:
        return math.nan
    return float(normalize_answer(content) == normalize_answer(reference))


def _contains(ignore_case: bool) -> PairFn:
    def score(content: str, reference: str | None) -> float:
        if reference is None:
            return math.nan
        needle = reference.strip()
        if ignore_case:
            return float(needle.casefold() in content.casefold())
        return float(needle in content)

    return score


def _regex(pattern: re.Pattern[str], fullmatch: bool) -> PairFn:
    def score(content: str, reference: str | None) -> float:
        if fullmatch:
            return float(pattern.fullmatch(content.strip()) is not None)
        return float(pattern.search(content) is not None)

    return score


def _numeric(tolerance: float, rel_tolerance: float) -> PairFn:
    def score(content: str, reference: str | None) -> float:
        if reference is None:
            return math.nan
        want = first_number(reference)
        if want is None:
            return math.nan
        got = first_number(content)
        if got is None:
            return 0.0
        allowed = max(tolerance, rel_tolerance * abs(want))
        return float(abs(got - want) <= allowed + 1e-12 * max(1.0, abs(want)))

    return score


def _json_valid(strip_fences: bool) -> PairFn:
    def score(content: str, reference: str | None) -> float:
        text = content.strip()
        if strip_fences:
            fenced = _FENCE_RE.match(text)
            if fenced:
                text = fenced.group(1).strip()
        try:
            json.loads(text)
        except ValueError:
            return 0.0
        return 1.0

    return score


# --- resolution -------------------------------------------------------------------------------


def _opt_bool(opts: dict[str, Any], key: str, default: bool, where: str) -> bool:
    value = opts.pop(key, default)
    if not isinstance(value, bool):
        raise SpecError(f"must be true or false, got {value!r}", key=f"{where}.{key}")
    return value


def _opt_float(opts: dict[str, Any], key: str, default: float, where: str) -> float:
    value = opts.pop(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0 or math.isinf(value):
        raise SpecError(f"must be a finite number >= 0, got {value!r}", key=f"{where}.{key}")
    return float(value)


def _build_regex(opts: dict[str, Any], where: str) -> tuple[PairFn, bool]:
    pattern = opts.pop("pattern", None)
    if not isinstance(pattern, str) or not pattern:
        raise SpecError("regex needs `pattern`: a non-empty regular expression string", key=f"{where}.pattern")
    flags = re.IGNORECASE if _opt_bool(opts, "ignore_case", False, where) else 0
    try:
        compiled = re.compile(pattern, flags)
    except re.error as exc:
        raise SpecError(f"not a valid regular expression ({exc})", key=f"{where}.pattern") from None
    return _regex(compiled, _opt_bool(opts, "fullmatch", False, where)), False


def _build_builtin(kind: str, opts: dict[str, Any], where: str) -> tuple[PairFn, bool]:
    """(scoring function, needs_reference); consumes the options it knows from `opts`."""
    if kind == "exact_match":
        return _exact(_opt_bool(opts, "ignore_case", False, where)), True
    if kind == "normalized_match":
        return _normalized, True
    if kind == "contains":
        return _contains(_opt_bool(opts, "ignore_case", True, where)), True
    if kind == "regex":
        return _build_regex(opts, where)
    if kind == "numeric":
        tol = _opt_float(opts, "tolerance", 0.0, where)
        return _numeric(tol, _opt_float(opts, "rel_tolerance", 0.0, where)), True
    if kind == "json_valid":
        return _json_valid(_opt_bool(opts, "strip_fences", True, where)), False
    raise AssertionError(kind)  # pragma: no cover - guarded by BUILTINS


BUILTINS: tuple[str, ...] = ("contains", "exact_match", "json_valid", "normalized_match", "numeric", "regex")
_ALLOWED = ", ".join(BUILTINS) + ' or a custom "module:function"'


def _did_you_mean(kind: str) -> str:
    import difflib

    close = difflib.get_close_matches(kind, BUILTINS, n=1, cutoff=0.6)
    return f"did you mean {close[0]}? " if close else ""


def _import_custom(ref: str, where: str) -> CustomFn:
    module_name, _, func_name = ref.partition(":")
    if not module_name or not func_name.isidentifier():
        raise SpecError(f"{ref!r} is not a scorer: use {_ALLOWED}", key=where)
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        cwd = str(Path.cwd())
        if cwd in sys.path:
            raise SpecError(f"cannot import module {module_name!r} (is it on PYTHONPATH?)", key=where) from None
        sys.path.insert(0, cwd)  # a scorer file next to where harness is run is the common case
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            raise SpecError(f"cannot import module {module_name!r} (is it on PYTHONPATH?)", key=where) from None
        finally:
            sys.path.remove(cwd)
    func = getattr(module, func_name, None)
    if not callable(func):
        raise SpecError(f"module {module_name!r} has no function {func_name!r}", key=where)
    return func


def _check_name(name: Any, where: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise SpecError("name must be letters, digits and _ (not starting with a digit), at most 64", key=where)
    return name


def _check_allowed(ref: str, allow_custom: bool | Collection[str], where: str) -> None:
    """Refuse (before any import) a custom scorer that the user did not name."""
    if allow_custom is True or (allow_custom is not False and ref in allow_custom):
        return
    raise SpecError(
        f"custom scorer {ref!r} comes from a run directory and is not run (it would import code); "
        f"pass --allow-scorer {ref} to run it, or choose scorers with --scoring",
        key=where,
    )


def _resolve_one(item: str | Mapping[str, Any], where: str, allow_custom: bool | Collection[str] = True) -> Scorer:
    if isinstance(item, str):
        opts: dict[str, Any] = {"type": item}
    elif isinstance(item, Mapping):
        opts = dict(item)
    else:
        raise SpecError(f"must be a scorer name or a mapping with `type`, got {type(item).__name__}", key=where)
    type_key = f"{where}.type" if isinstance(item, Mapping) else where
    kind = opts.pop("type", None)
    if not isinstance(kind, str) or not kind:
        raise SpecError(f"needs `type`: one of {_ALLOWED}", key=f"{where}.type")
    name = opts.pop("name", None)
    given = dict(opts)  # the options as written, before the builder consumes them
    if kind in BUILTINS:
        fn, needs_ref = _build_builtin(kind, opts, where)
        if opts:
            bad = min(opts)
            raise SpecError(f"unknown option {bad!r} for scorer {kind}", key=f"{where}.{bad}")
        scorer = Scorer(kind, kind, given, pair_fn=fn, needs_reference=needs_ref)
    elif ":" in kind:
        _check_allowed(kind, allow_custom, type_key)
        scorer = Scorer(kind.partition(":")[2], kind, given, custom_fn=_import_custom(kind, type_key))
    else:
        raise SpecError(f"unknown scorer {kind!r}; {_did_you_mean(kind)}use {_ALLOWED}", key=type_key)
    if name is not None:
        scorer = dataclasses.replace(scorer, name=_check_name(name, f"{where}.name"))
    return scorer


def resolve_scorers(
    items: list[str | dict[str, Any]] | None, *, key: str = "scoring", allow_custom: bool | Collection[str] = True
) -> list[Scorer]:
    """Turn a `scoring` list into scorers; SpecError names the bad item (`scoring[2].pattern`).

    `allow_custom`: True when the list comes from the user (their spec, --scoring); for a list
    read from a run directory, the `module:function` names the user allowed (default none).
    """
    if items is None:
        return []
    if not isinstance(items, list):
        raise SpecError("must be a list of scorer names or mappings", key=key)
    scorers: list[Scorer] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        scorer = _resolve_one(item, f"{key}[{i}]", allow_custom)
        if scorer.name in seen:
            raise SpecError(
                f"metric name {scorer.name!r} is already used by {key}[{seen[scorer.name]}]; give one a `name`",
                key=f"{key}[{i}]",
            )
        seen[scorer.name] = i
        scorers.append(scorer)
    return scorers


# --- applying ---------------------------------------------------------------------------------


def _score_builtin(scorer: Scorer, content: pd.Series, reference: pd.Series) -> np.ndarray:
    """Score each distinct (content, reference) pair once: sweeps repeat outputs a lot."""
    import numpy as np
    import pandas as pd

    assert scorer.pair_fn is not None
    fn = scorer.pair_fn
    c_codes, c_uniques = pd.factorize(content, use_na_sentinel=True)
    r_codes, r_uniques = pd.factorize(reference, use_na_sentinel=True)
    combined = (c_codes.astype(np.int64) + 1) * (len(r_uniques) + 1) + (r_codes.astype(np.int64) + 1)
    pair_codes, inverse = np.unique(combined, return_inverse=True)
    c_text = ["", *(str(c) for c in c_uniques)]  # code 0: missing content scores as ""
    r_text: list[str | None] = [None, *(str(r) for r in r_uniques)]
    stride = len(r_uniques) + 1
    values = np.fromiter(
        (fn(c_text[code // stride], r_text[code % stride]) for code in pair_codes.tolist()),
        dtype=np.float64,
        count=len(pair_codes),
    )
    return values[inverse.reshape(-1)]


def _missing(value: Any) -> bool:
    import pandas as pd

    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA


def _score_custom(scorer: Scorer, rows: pd.DataFrame, where: str) -> np.ndarray:
    import numpy as np

    assert scorer.custom_fn is not None
    out = np.empty(len(rows), dtype=np.float64)
    records = rows.drop(columns=[c for c in ("logprobs",) if c in rows.columns]).to_dict("records")
    for i, row in enumerate(records):
        content = row.get("content")
        reference = row.get("reference")
        try:
            value = scorer.custom_fn(
                "" if _missing(content) else str(content), None if _missing(reference) else str(reference), row
            )
            out[i] = float(value) if value is not None else math.nan
        except Exception as exc:  # noqa: BLE001 - user code: any failure is reported as the scorer's fault
            raise SpecError(
                f"custom scorer {scorer.type} failed on request {row.get('request_id')} ({type(exc).__name__}: {exc})",
                key=where,
            ) from None
    return out


def score_frame(df: pd.DataFrame, scorers: list[Scorer]) -> pd.DataFrame:
    """One float64 column per scorer (named by metric name), same index as `df`; NaN on error rows."""
    import numpy as np
    import pandas as pd

    result = pd.DataFrame(index=df.index)
    if not len(df):
        for scorer in scorers:
            result[scorer.name] = pd.Series(dtype=np.float64)
        return result
    ok = (df["status"] == "ok").to_numpy(dtype=bool) if "status" in df else np.ones(len(df), dtype=bool)
    content = df["content"] if "content" in df else pd.Series([None] * len(df), index=df.index)
    reference = df["reference"] if "reference" in df else pd.Series([None] * len(df), index=df.index)
    for i, scorer in enumerate(scorers):
        values = np.full(len(df), np.nan)
        if ok.any():
            if scorer.builtin:
                values[ok] = _score_builtin(scorer, content[ok], reference[ok])
            else:
                values[ok] = _score_custom(scorer, df[ok], f"scoring[{i}]")
        result[scorer.name] = values
    return result


__all__ = ["BUILTINS", "Scorer", "first_number", "normalize_answer", "resolve_scorers", "score_frame"]
