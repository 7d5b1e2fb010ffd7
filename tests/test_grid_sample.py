"""`sample` without `exclude` decodes the chosen indices instead of walking the product."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.errors import UsageError
from harness.spec.grid import check_size, iter_point_params, iter_points, make_point
from harness.spec.sweepspec import Sweep


def walked(sweep: Sweep) -> list[str]:
    """The reference: enumerate every point and keep the sampled positions."""
    every = list(iter_point_params(sweep))
    keep = set(random.Random(sweep.sample_seed).sample(range(len(every)), sweep.sample)) if sweep.sample and sweep.sample < len(every) else None
    return [make_point(p).point_json for i, p in enumerate(every) if keep is None or i in keep]


@settings(max_examples=60, deadline=None)
@given(
    t=st.lists(st.sampled_from([0.0, 0.3, 0.7, 1.0, 1.5]), min_size=1, max_size=4, unique=True),
    k=st.lists(st.integers(-1, 50), min_size=0, max_size=3, unique=True),
    zipped=st.integers(0, 3),
    sample=st.integers(1, 40),
    seed=st.integers(0, 10),
)
def test_decoded_sample_equals_the_walked_sample(t: list, k: list, zipped: int, sample: int, seed: int) -> None:
    grid = {"temperature": t, **({"top_k": k} if k else {})}
    zip_ = {"min_p": [0.1 * i for i in range(zipped)], "top_p": [1.0 - 0.1 * i for i in range(zipped)]} if zipped else {}
    sweep = Sweep.model_validate({"grid": grid, "zip": zip_, "sample": sample, "sample_seed": seed})
    assert [p.point_json for p in iter_points(sweep)] == walked(sweep)


@pytest.mark.slow
def test_a_sampled_10_to_the_15_grid_is_fine_and_fast() -> None:
    axis = {"from": 1, "to": 100000, "step": 1}
    sweep = Sweep.model_validate({"grid": {"seed": axis, "top_k": axis, "max_tokens": axis}, "sample": 50})
    assert check_size(sweep) == 50
    points = list(itertools.islice(iter_points(sweep), 100))
    assert len(points) == 50 and len({p.cell_id for p in points}) == 50
    with pytest.raises(UsageError, match="1,000,000,000,000,000 points"):
        check_size(sweep.model_copy(update={"sample": None}))
    with pytest.raises(UsageError, match="the grid has"):
        check_size(sweep.model_copy(update={"exclude": [{"seed": 1}]}))
