"""The generic traffic families laid over the variants: seeded, all present, and each
the process it is named after."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from research.forecast.default_model import join_fast, routed_checkpoint
from research.forecast.families import (
    APPLY,
    FAMILIES,
    LEVEL_BOUNDS,
    PIN_SIGMA,
    piecewise_mean,
    widen,
)
from research.forecast.randomized import randomized_scenario
from research.forecast.traces import TRAINING_SCENARIOS, generate_variant
from sliceai.forecast.scenarios import generate_from
from sliceai.traffic.generators import load_scenario, resolve_slices

DAYS, INTERVAL_S = 2.0, 10.0
N = round(DAYS * 86_400 / INTERVAL_S)
EDGES = INTERVAL_S * np.arange(N + 1, dtype=np.float64)
FLAT = np.column_stack([np.full(N, 1e6), np.full(N, 2e5)])


def test_piecewise_mean_averages_over_each_interval() -> None:
    times = np.array([0.0, 5.0, 25.0])
    values = np.array([1.0, 3.0, 0.0])
    got = piecewise_mean(times, values, np.array([0.0, 10.0, 20.0, 30.0]))
    np.testing.assert_allclose(got, [2.0, 3.0, 1.5])


@pytest.mark.parametrize("name", TRAINING_SCENARIOS)
def test_same_seed_same_trace_other_seed_other_trace(name: str) -> None:
    a = generate_variant(name, 131, DAYS, INTERVAL_S, families=True)
    b = generate_variant(name, 131, DAYS, INTERVAL_S, families=True)
    c = generate_variant(name, 132, DAYS, INTERVAL_S, families=True)
    np.testing.assert_array_equal(a.load_bps, b.load_bps)
    assert a.load_bps.shape == c.load_bps.shape
    assert not np.array_equal(a.load_bps, c.load_bps)


def test_without_families_a_variant_is_what_it_was() -> None:
    """The main ensemble trained on plain variants: its recipe must still rebuild them."""
    plain = generate_variant("hospital", 121, 1.0, 60.0)
    scenario = randomized_scenario(load_scenario("hospital"), 121)
    np.testing.assert_array_equal(plain.load_bps, generate_from(scenario, 121, 1.0, 60.0).load_bps)
    widened = generate_variant("hospital", 121, 1.0, 60.0, families=True)
    assert not np.array_equal(plain.load_bps, widened.load_bps)


@pytest.mark.parametrize("seed", range(101, 113))
@pytest.mark.parametrize("name", TRAINING_SCENARIOS)
def test_every_family_lands_and_loads_stay_finite(name: str, seed: int) -> None:
    scenario = randomized_scenario(load_scenario(name), seed)
    caps = [s.cap for s in resolve_slices(scenario)]
    trace = generate_from(scenario, seed, 1.0, INTERVAL_S)
    widened, applied = widen(trace, seed, caps)
    assert {a.family for a in applied} == set(FAMILIES)
    assert widened.slices == trace.slices
    assert np.all(np.isfinite(widened.load_bps))
    assert np.all(widened.load_bps >= 0)
    touched = {a.slice for a in applied}
    for i, slice_name in enumerate(trace.slices):
        if "*" not in touched and slice_name not in touched:
            np.testing.assert_array_equal(widened.load_bps[:, i], trace.load_bps[:, i])
    assert not np.array_equal(widened.load_bps, trace.load_bps)


def test_a_slices_draws_do_not_depend_on_the_clock() -> None:
    """Events are drawn in seconds: the same seed at 10 s and 60 s gives the same
    full-buffer ceiling and the same number of steps."""
    fine = APPLY["level-steps"](FLAT, EDGES, np.random.default_rng(5), None)[1]
    coarse_edges = 60.0 * np.arange(N // 6 + 1, dtype=np.float64)
    coarse = APPLY["level-steps"](FLAT[: N // 6], coarse_edges, np.random.default_rng(5), None)[1]
    assert fine == coarse


@pytest.mark.parametrize("seed", range(8))
def test_on_off_sources_only_add_and_switch(seed: int) -> None:
    out, params = APPLY["on-off"](FLAT, EDGES, np.random.default_rng(seed), None)
    added = out - FLAT
    assert np.all(added >= -1e-6)
    assert np.ptp(added[:, 0]) > 0
    dl_share = added[:, 0] / np.maximum(added.sum(axis=1), 1e-9)
    np.testing.assert_allclose(dl_share[added.sum(axis=1) > 1], 1e6 / 1.2e6)
    assert 1.1 <= dict(params)["min_shape"] <= 1.9


@pytest.mark.parametrize("seed", range(8))
def test_markov_bursts_raise_the_load_for_a_while(seed: int) -> None:
    out, params = APPLY["markov-bursts"](FLAT, EDGES, np.random.default_rng(seed), None)
    ratio = out[:, 0] / FLAT[:, 0]
    assert np.all(ratio >= 1 - 1e-9)
    assert ratio.max() >= 1.5
    assert np.mean(ratio == 1.0) > 0.5  # mostly in the base state
    assert dict(params)["bursts"] >= 1


@pytest.mark.parametrize("seed", range(8))
def test_level_steps_are_bounded_piecewise_constant_factors(seed: int) -> None:
    out, params = APPLY["level-steps"](FLAT, EDGES, np.random.default_rng(seed), None)
    factor = out[:, 0] / FLAT[:, 0]
    np.testing.assert_allclose(out[:, 1] / FLAT[:, 1], factor)
    assert np.all(factor >= LEVEL_BOUNDS[0] - 1e-9)
    assert np.all(factor <= LEVEL_BOUNDS[1] + 1e-9)
    steps = int(dict(params)["steps"])
    assert steps >= 1
    # each step changes the factor in at most two intervals (the one it falls in, the next)
    assert np.count_nonzero(np.diff(factor)) <= 2 * steps


@pytest.mark.parametrize("seed", range(8))
def test_full_buffer_pins_a_direction_just_under_a_ceiling(seed: int) -> None:
    noisy = FLAT * np.exp(np.random.default_rng(99).normal(0.0, 0.3, FLAT.shape))
    cap = 5e6
    out, params = APPLY["full-buffer"](noisy, EDGES, np.random.default_rng(seed), cap)
    p = dict(params)
    d = int(p["direction"])
    assert p["ceiling_bps"] <= cap
    assert np.all(out[:, d] <= cap * 1.0000001)
    changed = out[:, d] != noisy[:, d]
    assert changed.any()
    # inside a stretch the pinned load varies far less than the slice's own noise
    rel = out[changed, d] / np.median(out[changed, d])
    inside = rel[np.abs(np.log(rel)) < np.log(1.25 * 1.25)]
    assert np.std(np.log(inside)) < 0.3
    assert p["sigma"] <= PIN_SIGMA[1]
    assert np.all(out[:, 1 - d] >= noisy[:, 1 - d])  # acknowledgements only add


def test_a_fast_ensemble_joins_only_a_checkpoint_that_routes_to_it(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no checkpoint"):
        routed_checkpoint(tmp_path)
    (tmp_path / "config.json").write_text('{"fast_below_s": 0.0}')
    with pytest.raises(ValueError, match="hands clocks below"):
        join_fast([tmp_path / "a", tmp_path / "b"], tmp_path)
    with pytest.raises(ValueError, match="each seed trains two"):
        join_fast([tmp_path / "a"], tmp_path)
    assert not (tmp_path / "fast").exists()
