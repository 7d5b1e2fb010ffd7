"""What a run cost, and what a planned sweep may cost: token counts × each target's price.

Prices are per million tokens, input and output (`price: {input_per_mtok, output_per_mtok}` of a
target), in whatever currency the spec states them; harness never converts.

Per row (`with_costs`): `cost` = prompt_tokens × input_per_mtok / 10⁶ + completion_tokens ×
output_per_mtok / 10⁶, from the server's `usage` counts. A missing count counts 0 (an error row the
server never answered was not billed); a row whose target has no price gets NaN.

Per cell (`harness.analysis.metrics.summarize`, when rows carry `cost`):
  cost_total                 Σ cost over the cell's rows (ok and error)
  cost_per_request           cost_total ÷ rows
  <scorer>_cost_per_correct  cost_total ÷ Σ scores of the cell (a score of 1 is one correct answer,
                             0.5 half of one); NaN when nothing was correct

Plan estimate (`estimate_cost`): input tokens ≈ prompt characters ÷ 4 (`CHARS_PER_TOKEN`, a rough
rule for English text; real tokenizers differ by ±30 %), output tokens ≤ max_tokens per request.
The output part is therefore an upper bound, the input part an estimate; a request without
max_tokens has no upper bound (None).

Targets: rows carry a `target` column (the target's name). Runs written before targets existed
have none: they are one target, called `default` (`DEFAULT_TARGET`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness.spec.plan import CHARS_PER_TOKEN

if TYPE_CHECKING:  # numpy and pandas are imported where used: `harness plan` needs neither
    import numpy as np
    import pandas as pd

DEFAULT_TARGET = "default"
PER = 1_000_000


@dataclass(frozen=True)
class Price:
    """Price per million input (prompt) and output (completion) tokens."""

    input_per_mtok: float
    output_per_mtok: float

    @classmethod
    def parse(cls, value: Any) -> Price | None:
        """A Price from a manifest/spec mapping (or a Price-like object); None when absent or malformed."""
        if value is None:
            return None
        def get(key: str) -> Any:
            return value.get(key) if isinstance(value, Mapping) else getattr(value, key, None)

        try:
            inp, out = float(get("input_per_mtok")), float(get("output_per_mtok"))
        except (TypeError, ValueError):
            return None
        if not (math.isfinite(inp) and math.isfinite(out)) or inp < 0 or out < 0:
            return None
        return cls(inp, out)

    def of(self, prompt_tokens: float, completion_tokens: float) -> float:
        return (prompt_tokens * self.input_per_mtok + completion_tokens * self.output_per_mtok) / PER


def target_series(rows: pd.DataFrame) -> pd.Series:
    """Each row's target name: the `target` column, `default` where missing (older runs)."""
    import pandas as pd

    if "target" not in rows.columns:
        return pd.Series(DEFAULT_TARGET, index=rows.index, dtype=object)
    return rows["target"].astype(object).where(rows["target"].notna(), DEFAULT_TARGET)


def manifest_targets(manifest: Any) -> dict[str, dict[str, Any]]:
    """The manifest's `targets` map ({name: {model, base_url, price, …}}), `{}` for older manifests.

    Works on a `Manifest` (a declared field, or an extra key of older code) and on a plain dict."""
    found = getattr(manifest, "targets", None)
    if not found:
        extra = getattr(manifest, "model_extra", None) or {}
        found = extra.get("targets") if isinstance(extra, Mapping) else None
    if not found and isinstance(manifest, Mapping):
        found = manifest.get("targets")
    if not isinstance(found, Mapping):
        return {}
    return {str(k): dict(v) if isinstance(v, Mapping) else {} for k, v in found.items()}


def prices_from_manifest(manifest: Any) -> dict[str, Price | None]:
    """Target name → price (None when not given) from a run's manifest.

    Reads the manifest's `targets` map (`{name: {..., "price": {...} | null}}`); failing that the
    stored spec's `targets` list or `target.price` (older manifests); else `{}`."""
    targets = manifest_targets(manifest)
    if targets:
        return {name: Price.parse(info.get("price")) for name, info in targets.items()}
    out: dict[str, Price | None] = {}
    spec = getattr(manifest, "spec", None)
    if spec is None and isinstance(manifest, Mapping):
        spec = manifest.get("spec")
    spec = spec if isinstance(spec, Mapping) else {}
    listed = spec.get("targets")
    if isinstance(listed, list):
        for item in listed:
            if isinstance(item, Mapping) and item.get("name") is not None:
                out[str(item["name"])] = Price.parse(item.get("price"))
    elif isinstance(spec.get("target"), Mapping):
        one = spec["target"]
        out[str(one.get("name") or DEFAULT_TARGET)] = Price.parse(one.get("price"))
    return out


def row_costs(rows: pd.DataFrame, prices: Mapping[str, Price | None]) -> np.ndarray:
    """The cost of each row (see the module docstring); NaN where the row's target has no price."""
    import numpy as np
    import pandas as pd

    n = len(rows)
    out = np.full(n, np.nan)
    if not n or not any(p is not None for p in prices.values()):
        return out
    names = target_series(rows).astype(str).to_numpy()
    if len(prices) == 1 and "target" not in rows.columns:  # an older run: its one target, whatever its name
        names = np.full(n, next(iter(prices)), dtype=object)

    def tokens(col: str) -> np.ndarray:
        if col not in rows.columns:
            return np.zeros(n)
        return np.nan_to_num(pd.to_numeric(rows[col], errors="coerce").to_numpy(dtype=float), nan=0.0)

    prompt, completion = tokens("prompt_tokens"), tokens("completion_tokens")
    for name, price in prices.items():
        if price is None:
            continue
        mask = names == name
        out[mask] = (prompt[mask] * price.input_per_mtok + completion[mask] * price.output_per_mtok) / PER
    return out


def with_costs(rows: pd.DataFrame, prices: Mapping[str, Price | None]) -> pd.DataFrame:
    """`rows` with a `cost` column when some target has a price (unchanged otherwise)."""
    if not any(p is not None for p in prices.values()):
        return rows
    return rows.assign(cost=row_costs(rows, prices))


def cell_costs(cost: np.ndarray, cells: np.ndarray, m: int, scores: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """Per cell (codes 0..m-1): cost_total, cost_per_request and `<scorer>_cost_per_correct`."""
    import numpy as np
    import pandas as pd

    out = pd.DataFrame(index=pd.RangeIndex(m))
    known = ~np.isnan(cost)
    rows = np.bincount(cells, minlength=m).astype(float)
    priced = np.bincount(cells[known], minlength=m)
    total = np.bincount(cells[known], weights=cost[known], minlength=m)
    total = np.where(priced > 0, total, np.nan)
    out["cost_total"] = total
    with np.errstate(invalid="ignore", divide="ignore"):
        out["cost_per_request"] = total / np.where(rows > 0, rows, np.nan)
        for name, values in scores.items():
            v = np.asarray(values, dtype=float)
            has = ~np.isnan(v)
            correct = np.bincount(cells[has], weights=v[has], minlength=m)
            out[f"{name}_cost_per_correct"] = np.where(correct > 0, total / np.where(correct > 0, correct, 1.0), np.nan)
    return out


@dataclass(frozen=True)
class CostEstimate:
    """One target's share of a planned sweep: requests, token estimates and (with a price) cost."""

    target: str
    requests: int
    input_tokens: int  # estimate (prompt characters ÷ CHARS_PER_TOKEN)
    output_tokens_max: int | None  # upper bound (Σ max_tokens); None when unbounded
    price: Price | None = None

    @property
    def input_cost(self) -> float | None:
        return None if self.price is None else self.input_tokens * self.price.input_per_mtok / PER

    @property
    def output_cost_max(self) -> float | None:
        if self.price is None or self.output_tokens_max is None:
            return None
        return self.output_tokens_max * self.price.output_per_mtok / PER

    @property
    def cost_max(self) -> float | None:
        """Estimated input cost + the output cost's upper bound (None without price or bound)."""
        a, b = self.input_cost, self.output_cost_max
        return None if a is None or b is None else a + b

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "requests": self.requests,
            "est_input_tokens": self.input_tokens,
            "max_output_tokens": self.output_tokens_max,
            "price": None if self.price is None else {"input_per_mtok": self.price.input_per_mtok,
                                                      "output_per_mtok": self.price.output_per_mtok},
            "est_input_cost": self.input_cost,
            "max_output_cost": self.output_cost_max,
            "est_cost_max": self.cost_max,
        }


def estimate_cost(target: str, price: Price | None, requests: int, prompt_chars: int,
                  max_tokens: int | None) -> CostEstimate:
    """A target's estimate from its request count, the characters of the prompts it will be sent
    (summed over its requests) and Σ max_tokens over its requests (None: some request has none)."""
    return CostEstimate(target, int(requests), int(prompt_chars) // CHARS_PER_TOKEN,
                        None if max_tokens is None else int(max_tokens), price)


def plan_costs(plan: Any) -> list[CostEstimate]:
    """One estimate per target of a `harness.spec.plan.Plan`: from its `per_target` loads (name,
    requests, prompt_chars, max_tokens, price) when it has them, else the plan as one target."""
    loads = getattr(plan, "per_target", None)
    if loads:
        return [estimate_cost(str(load.name), Price.parse(load.price), load.requests, load.prompt_chars,
                              load.max_tokens) for load in loads.values()]
    target = getattr(plan.spec, "target", None)
    name = str(getattr(target, "name", None) or DEFAULT_TARGET)
    return [estimate_cost(name, Price.parse(getattr(target, "price", None)), plan.requests,
                          plan.prompt_chars * plan.points * plan.repeats, plan.max_completion_tokens)]


__all__ = [
    "CHARS_PER_TOKEN",
    "DEFAULT_TARGET",
    "CostEstimate",
    "Price",
    "cell_costs",
    "estimate_cost",
    "manifest_targets",
    "plan_costs",
    "prices_from_manifest",
    "row_costs",
    "target_series",
    "with_costs",
]
