"""The ``sliceai`` replay allocator (the model through the planner): registered, causal,
chunking-invariant, within bounds; and the model-call budget."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sliceai.forecast import features
from sliceai.policy import load_policy
from sliceai.replay import PlannerAllocator, make_allocator
from sliceai.replay.allocators import policy_bounds

POLICY = Path(__file__).resolve().parents[2] / "policies" / "hospital.yaml"


def _load(n: int, n_slices: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = np.array([5e5, 5e6, 4e6, 1e6, 8e7])[:n_slices]
    return base[None, :, None] * rng.lognormal(0, 0.2, size=(n, n_slices, 2))


def _run(load: np.ndarray, chunks: list[int]) -> np.ndarray:
    policy = load_policy(POLICY)
    alloc = make_allocator("sliceai")
    alloc.start(policy, policy.slice_names, 10.0, 1.7e9)
    out, first = [], 0
    for size in chunks:
        out.append(alloc.allocate_chunk(load[first : first + size]))
        first += size
    return np.concatenate(out)


@pytest.fixture(autouse=True)
def _tiny_model(tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLICEAI_MODEL", str(tiny_checkpoint))
    monkeypatch.setenv("SLICEAI_DEVICE", "cpu")


def test_registered_and_forecasting_with_the_named_checkpoint() -> None:
    alloc = make_allocator("sliceai")
    assert isinstance(alloc, PlannerAllocator)
    policy = load_policy(POLICY)
    alloc.start(policy, policy.slice_names, 10.0, 1.7e9)
    assert alloc.planner.forecaster.name == "pool(model, ewma, rolling-quantile)"


def test_rates_are_finite_within_bounds_and_causal() -> None:
    policy = load_policy(POLICY)
    n = 60
    load = _load(n, len(policy.slices))
    rates = _run(load, [n])
    assert rates.shape == load.shape
    floor, cap = policy_bounds(policy)
    assert np.all(np.isfinite(rates))
    assert np.all(rates >= floor - 1e-6)
    assert np.all(rates <= cap + 1e-6)
    # Changing interval 40 onwards leaves rows 0..40 unchanged (row t sees only < t).
    changed = load.copy()
    changed[40:] *= 5.0
    np.testing.assert_allclose(_run(changed, [n])[:41], rates[:41])


def test_chunking_does_not_change_the_plan() -> None:
    policy = load_policy(POLICY)
    load = _load(50, len(policy.slices), seed=1)
    load[7:9, 1] = np.nan
    whole = _run(load, [50])
    # float32 batches of other sizes may move the 7th digit
    np.testing.assert_allclose(_run(load, [7, 1, 20, 22]), whole, rtol=1e-5)


def test_a_small_history_budget_splits_the_model_calls_not_the_plan(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    policy = load_policy(POLICY)
    load = _load(40, len(policy.slices), seed=2)
    whole = _run(load, [40])
    # Room for the histories of about one origin per call (10 series of 32 intervals).
    monkeypatch.setattr(features, "HISTORY_COPY_BYTES", 8 * 10 * 40)
    assert features.origins_per_call(10, 32, 128) == 1
    np.testing.assert_allclose(_run(load, [40]), whole, rtol=1e-5)


def test_origins_per_call_keeps_the_copied_history_within_budget() -> None:
    day_at_1s = 86400 + 64
    n = features.origins_per_call(16, day_at_1s, 128)
    assert 1 <= n < 128
    assert n * 16 * day_at_1s * 8 <= features.HISTORY_COPY_BYTES
    assert features.origins_per_call(16, 256, 128) == 128  # short histories: the cap
    assert features.origins_per_call(16, 10**9, 128) == 1  # never zero
