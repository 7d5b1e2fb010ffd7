"""Pair the rows of two runs by (point, prompt_id, sample), independent of the model name.

The point is identified by ``point_json`` (canonical JSON of the swept parameters), not by
``cell_id``: a cell id may hash the model, and comparing models is the typical use. Rows of an
older run without ``point_json`` fall back to the JSON of the sampling parameters that were
sent. Duplicate keys (a resumed run that retried a row) keep the last ok row.
"""

from __future__ import annotations

import json
import math
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from harness.rundir.records import FLOAT_PARAMS, INT_PARAMS
from harness.spec.grid import canonical_point

KEY: tuple[str, str, str] = ("point", "prompt_id", "sample")
BASE_SUFFIX = "__b"
CAND_SUFFIX = "__c"


@dataclass(frozen=True)
class Pairing:
    """Paired rows and what could not be paired.

    ``frame`` has the KEY columns and, per metric ``m``, ``m__b`` and ``m__c``.
    """

    frame: pd.DataFrame
    shared_points: tuple[str, ...]
    only_base: tuple[str, ...]
    only_cand: tuple[str, ...]
    unpaired_base: int
    unpaired_cand: int

    @property
    def n_pairs(self) -> int:
        return len(self.frame)


def _params_json(row: Mapping[Hashable, Any]) -> str:
    point: dict[str, Any] = {}
    for name in FLOAT_PARAMS + INT_PARAMS:
        value = row.get(name)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        point[name] = int(value) if name in INT_PARAMS else float(value)
    return canonical_point(point)


def point_keys(results: pd.DataFrame) -> pd.Series:
    """The pairing key of each row's point: ``point_json``, else the sent parameters as JSON."""
    if "point_json" in results.columns:
        keys = results["point_json"].astype("object")
    else:
        keys = pd.Series([None] * len(results), index=results.index, dtype="object")
    missing = keys.isna()
    if missing.any():
        cols = [c for c in FLOAT_PARAMS + INT_PARAMS if c in results.columns]
        fallback = results.loc[missing, cols].to_dict("records")
        keys = keys.copy()
        keys.loc[missing] = [_params_json(r) for r in fallback]
    return keys.map(_canonical)


def _canonical(text: str) -> str:
    """Re-serialize JSON so key order, spacing and ``1`` vs ``1.0`` never break a pair."""
    try:
        data = json.loads(text)
    except (TypeError, ValueError):
        return str(text)
    if isinstance(data, dict):
        data = {k: _number(k, v) for k, v in data.items()}
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def _number(name: str, value: Any) -> Any:
    """Float parameters as floats, integer parameters as ints (when the value allows)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    if name in FLOAT_PARAMS:
        return float(value)
    if name in INT_PARAMS and float(value).is_integer():
        return int(value)
    return value


def point_label(point: str) -> str:
    """``temperature=0.7 top_p=0.9`` for a point JSON; ``(defaults)`` for the empty point."""
    try:
        data = json.loads(point)
    except ValueError:
        return point
    if not isinstance(data, dict):
        return point
    if not data:
        return "(defaults)"
    return " ".join(f"{k}={v}" for k, v in sorted(data.items()))


def dedupe(values: pd.DataFrame) -> pd.DataFrame:
    """One row per KEY: the last ok row if any, else the last row."""
    if values.empty:
        return values
    order = values.assign(_rank=values["_ok"].astype(int), _pos=range(len(values)))
    order = order.sort_values(["_rank", "_pos"], kind="stable")
    return order.drop_duplicates(list(KEY), keep="last").drop(columns=["_rank", "_pos"]).sort_index()


def pair(base: pd.DataFrame, cand: pd.DataFrame, metrics: list[str]) -> Pairing:
    """Inner-join two value frames (KEY + metrics + ``_ok``) on KEY."""
    base = dedupe(base)
    cand = dedupe(cand)
    keep = list(KEY) + metrics
    frame = base[keep].merge(cand[keep], on=list(KEY), how="inner", suffixes=(BASE_SUFFIX, CAND_SUFFIX))
    base_points = set(base["point"])
    cand_points = set(cand["point"])
    return Pairing(
        frame=frame.sort_values(list(KEY), kind="stable").reset_index(drop=True),
        shared_points=tuple(sorted(base_points & cand_points)),
        only_base=tuple(sorted(base_points - cand_points)),
        only_cand=tuple(sorted(cand_points - base_points)),
        unpaired_base=len(base) - len(frame),
        unpaired_cand=len(cand) - len(frame),
    )


__all__ = ["BASE_SUFFIX", "CAND_SUFFIX", "KEY", "Pairing", "dedupe", "pair", "point_keys", "point_label"]
