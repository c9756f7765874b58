"""Allocators: no look-ahead, chunking does not matter, the baselines do what they say."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sliceai.policy import DIRECTIONS, load_policy
from sliceai.replay import (
    ALLOCATORS,
    Allocator,
    ReplayError,
    allocator_names,
    make_allocator,
    register_allocator,
)
from sliceai.replay.allocators import (
    StaticAllocator,
    dead_band,
    fit_to_capacity,
    policy_bounds,
    static_rates,
)

REPO = Path(__file__).resolve().parents[2]
CAMPUS = load_policy(REPO / "policies" / "campus.yaml")
N = 330  # past rolling-quantile's 300-interval window, so both its code paths run


def _load(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    _, cap = policy_bounds(CAMPUS)
    top = np.where(np.isfinite(cap), cap, 1e8)
    return top[np.newaxis] * rng.uniform(0.0, 0.9, (n, len(CAMPUS.slices), 2))


def _run(name: str, load: np.ndarray, chunk: int) -> np.ndarray:
    alloc = make_allocator(name)
    alloc.start(CAMPUS, CAMPUS.slice_names, 1.0, 0.0)
    parts = []
    for i in range(0, load.shape[0], chunk):
        piece = load[i : i + chunk].copy()
        piece.setflags(write=False)
        parts.append(alloc.allocate_chunk(piece))
    return np.concatenate(parts)


LOOKING_BACK = [name for name in allocator_names() if name != "oracle"]


@pytest.mark.parametrize("name", LOOKING_BACK)
@pytest.mark.parametrize("cut", [1, 310])
def test_no_allocator_sees_the_future(name, cut):
    load = _load(N, seed=cut)
    changed = load.copy()
    changed[cut:] *= np.random.default_rng(99).uniform(0.2, 3.0, changed[cut:].shape)
    a = _run(name, load, chunk=64)
    b = _run(name, changed, chunk=64)
    # Row t may use intervals < t only: rows 0..cut must not move when load[cut:] does.
    np.testing.assert_array_equal(a[: cut + 1], b[: cut + 1])
    # ... and the allocator does react to the past (the perturbation is visible later).
    if name != "static":
        assert not np.array_equal(a[cut + 1 :], b[cut + 1 :])


def test_oracle_sees_the_present_only():
    load = _load(40, seed=5)
    changed = load.copy()
    changed[20:] *= 0.5
    a, b = _run("oracle", load, 16), _run("oracle", changed, 16)
    np.testing.assert_array_equal(a[:20], b[:20])
    assert not np.array_equal(a[20], b[20])


@pytest.mark.parametrize("name", allocator_names())
def test_chunking_does_not_change_allocations(name):
    load = _load(N, seed=11)
    # The model runs in float32 and batches the origins of a chunk together, so chunks of
    # other sizes can move its quantiles in the 7th digit; the other allocators are exact.
    rtol = 1e-5 if name == "sliceai" else 1e-9
    np.testing.assert_allclose(_run(name, load, 1000), _run(name, load, 37), rtol=rtol)


@pytest.mark.parametrize("name", allocator_names())
def test_allocations_respect_floors_caps_and_capacity(name):
    out = _run(name, _load(120, seed=2), 50)
    floor, cap = policy_bounds(CAMPUS)
    assert np.all(out >= floor - 1e-6)
    assert np.all(out <= cap + 1e-6)
    capacity = np.array([link.capacity for link in CAMPUS.topology.links])
    per_link = np.einsum("ls,nsd->nld", CAMPUS.incidence.astype(float), out)
    assert np.all(per_link <= capacity[np.newaxis, :, np.newaxis] * (1 + 1e-9))


def test_static_split_is_guarantees_plus_share_by_maximum():
    rates = static_rates(CAMPUS)
    floor, cap = policy_bounds(CAMPUS)
    for d, direction in enumerate(DIRECTIONS):
        # Both links hold every slice at 1 Gbit/s; the whole capacity is handed out
        # unless every slice reached its cap.
        if cap[:, d].sum() >= 1e9:
            assert rates[:, d].sum() == pytest.approx(1e9, rel=1e-9), direction
        else:
            np.testing.assert_allclose(rates[:, d], cap[:, d])
    assert np.all(rates >= floor)
    assert np.all(rates <= cap + 1e-6)


def test_dead_band_holds_small_moves():
    targets = np.array([[100.0], [104.0], [96.0], [106.0], [101.0], [80.0]])
    out = dead_band(targets, np.array([100.0]), 0.05)
    np.testing.assert_array_equal(out[:, 0], [100, 100, 100, 106, 106, 80])


def test_fit_to_capacity_keeps_floors_and_scales_the_rest():
    floor, _ = policy_bounds(CAMPUS)
    rates = (floor + 5e8)[np.newaxis]  # far over 1 Gbit/s on both links
    fitted = fit_to_capacity(CAMPUS, rates)
    assert np.all(fitted >= floor - 1e-6)
    np.testing.assert_allclose(fitted[0].sum(axis=0), [1e9, 1e9], rtol=1e-9)


def test_ewma_follows_a_step_with_its_margin():
    load = np.full((60, len(CAMPUS.slices), 2), 1e6)
    load[30:] = 2e6
    out = _run("ewma", load, 25)
    i = CAMPUS.slice_index("campus-embb")  # no floor, cap far above
    assert out[29, i, 0] == pytest.approx(1.2e6)
    assert out[31, i, 0] == pytest.approx(1.2 * (0.3 * 2e6 + 0.7 * 1e6))
    assert out[59, i, 0] == pytest.approx(2.4e6, rel=1e-3)


def test_registry_accepts_new_allocators_and_rejects_unknown_names():
    class Half(StaticAllocator):
        name = "half-static"

        def allocate_chunk(self, load: np.ndarray) -> np.ndarray:
            return super().allocate_chunk(load) / 2

    register_allocator("half-static", Half)
    try:
        assert "half-static" in allocator_names()
        alloc = make_allocator("half-static")
        assert isinstance(alloc, Allocator)
    finally:
        del ALLOCATORS["half-static"]
    with pytest.raises(ReplayError, match="unknown allocator 'nope'"):
        make_allocator("nope")


def test_builtin_allocators_are_registered():
    assert {"static", "proportional", "ewma", "rolling-quantile", "oracle"} <= set(
        allocator_names()
    )
