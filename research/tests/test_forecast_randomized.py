"""Randomised scenario variants: seeded, bounded, and coherent across shared streams."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from research.forecast.default_model import join, member_specs
from research.forecast.randomized import RATE_LOG_RANGE, randomized_scenario
from research.forecast.traces import generate_variant
from sliceai.traffic.generators import load_scenario, resolve_slices
from sliceai.traffic.scenario_model import WEEKDAYS, Level, Scenario, Sessions, SliceSettings

SEEDS = range(101, 109)


def _by_name(scenario: Scenario) -> dict[str, SliceSettings]:
    return {s.name: s for s in resolve_slices(scenario)}


def test_same_seed_same_variant_other_seed_other_variant() -> None:
    base = load_scenario("hospital")
    assert randomized_scenario(base, 5) == randomized_scenario(base, 5)
    assert randomized_scenario(base, 5).slices != randomized_scenario(base, 6).slices


@pytest.mark.parametrize("seed", SEEDS)
def test_rates_and_caps_move_by_one_bounded_factor_per_slice(seed: int) -> None:
    base = _by_name(load_scenario("hospital"))
    variant = _by_name(randomized_scenario(load_scenario("hospital"), seed))
    assert variant.keys() == base.keys()
    low, high = np.exp(-RATE_LOG_RANGE), np.exp(RATE_LOG_RANGE)
    for name, old in base.items():
        new = variant[name]
        assert old.cap is not None
        assert new.cap is not None
        factor = new.cap / old.cap
        assert low <= factor <= high
        for a, b in zip(old.components, new.components, strict=True):
            if isinstance(a, Level):
                assert isinstance(b, Level)
                assert b.rate == pytest.approx(a.rate * factor)
            if isinstance(a, Sessions):
                assert isinstance(b, Sessions)
                assert b.rate.median == pytest.approx(a.rate.median * factor)


@pytest.mark.parametrize("seed", SEEDS)
def test_components_of_one_stream_keep_one_timing(seed: int) -> None:
    """The haptics and video of one surgery share their random stream: the variant must
    give both the same arrivals, durations and schedule, or they would drift apart."""
    variant = _by_name(randomized_scenario(load_scenario("hospital"), seed))
    haptics = variant["surgery-haptics"].components[0]
    video = variant["surgery-video"].components[0]
    assert isinstance(haptics, Sessions)
    assert isinstance(video, Sessions)
    assert haptics.per_hour == video.per_hour
    assert haptics.duration == video.duration
    assert haptics.when == video.when


@pytest.mark.parametrize("seed", SEEDS)
def test_schedules_rotate_as_a_whole(seed: int) -> None:
    """Window lengths and the number of scheduled days survive; the day profile is the
    same profile moved by whole hours."""
    base = _by_name(load_scenario("hospital"))
    variant = _by_name(randomized_scenario(load_scenario("hospital"), seed))
    old, new = base["surgery-video"].components[0], variant["surgery-video"].components[0]
    assert old.when is not None
    assert new.when is not None
    assert [e - s for s, e in new.when.hours] == [e - s for s, e in old.when.hours]
    assert len(set(new.when.days)) == len(old.when.days)
    assert set(new.when.days) <= set(WEEKDAYS)
    day_old, day_new = base["consults"].components[0].day, variant["consults"].components[0].day
    assert day_old is not None
    assert day_new is not None
    shifts = [k for k in range(24) if np.allclose(np.roll(day_old, k), day_new)]
    assert shifts, "the day profile is not a rotation of the original"


def test_variant_traces_are_finite_and_seeded() -> None:
    a = generate_variant("factory", 111, days=1.0, interval_s=60.0)
    b = generate_variant("factory", 111, days=1.0, interval_s=60.0)
    c = generate_variant("factory", 112, days=1.0, interval_s=60.0)
    assert a.slices == tuple(s.name for s in resolve_slices(load_scenario("factory")))
    assert np.all(np.isfinite(a.load_bps))
    assert np.all(a.load_bps >= 0)
    np.testing.assert_array_equal(a.load_bps, b.load_bps)
    assert not np.array_equal(a.load_bps, c.load_bps)


def test_member_specs_train_every_seed_with_and_without_variants() -> None:
    assert member_specs(2, variants=True) == [(0, False), (1, False), (0, True), (1, True)]
    assert member_specs(3, variants=False) == [(0, False), (1, False), (2, False)]


def test_joining_an_odd_number_of_networks_with_variants_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="each seed trains two"):
        join([tmp_path / "a", tmp_path / "b", tmp_path / "c"], tmp_path / "out", variants=True)
    two = [tmp_path / "a", tmp_path / "b"]
    with pytest.raises(ValueError, match="each seed trains two"):
        join(two, tmp_path / "out", variants=True, fast_dirs=[tmp_path / "c"])
    assert not (tmp_path / "out").exists()
