"""The held-out traffic family (sims/heldout): determinism, shapes, levels, tails, CLI."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sims.heldout import (
    FAMILIES,
    HeldoutError,
    RegimeStep,
    generate_heldout_trace,
    heldout_recipes,
)
from sims.heldout.cli import main
from sims.heldout.family import soft_ceiling
from sims.heldout.models import OnOffSessions
from sims.heldout.timeline import DiurnalClock, DiurnalProfile, Pulses, interval_means
from sliceai.policy import DIRECTIONS, PolicyError, load_policy
from sliceai.traffic.longcsv import read_long_csv
from sliceai.traffic.trace import Trace

ROOT = Path(__file__).resolve().parents[2]
POLICIES = sorted((ROOT / "policies").glob("*.yaml"))
HOSPITAL = ROOT / "policies" / "hospital.yaml"
DAY_AT_10S = 8_640


def hospital_day(
    seed: int = 0, n_intervals: int = DAY_AT_10S, interval_s: float = 10.0, **options: Any
) -> Trace:
    return generate_heldout_trace(
        HOSPITAL, seed=seed, n_intervals=n_intervals, interval_s=interval_s, **options
    )


def test_same_seed_same_trace_other_seed_other_trace() -> None:
    first, again, other = hospital_day(3), hospital_day(3), hospital_day(4)
    np.testing.assert_array_equal(first.load_bps, again.load_bps)
    assert first.slices == other.slices == load_policy(HOSPITAL).slice_names
    both = ~np.isnan(first.load_bps) & ~np.isnan(other.load_bps)
    assert not np.allclose(first.load_bps[both], other.load_bps[both])


def test_shapes_finite_and_non_negative() -> None:
    trace = hospital_day(1, missing_rate=0.0, start=1_700_000_000.0)
    assert trace.load_bps.shape == (DAY_AT_10S, 5, 2)
    assert (trace.start, trace.interval_s) == (1_700_000_000.0, 10.0)
    assert np.isfinite(trace.load_bps).all()
    assert (trace.load_bps >= 0).all()
    assert (trace.load_bps.mean(axis=0) > 0).all()


def test_missing_intervals_are_rare_nan_in_both_directions() -> None:
    trace = hospital_day(2, missing_rate=0.01)
    nan = np.isnan(trace.load_bps)
    np.testing.assert_array_equal(nan[:, :, 0], nan[:, :, 1])
    share = nan[:, :, 0].mean(axis=0)
    assert ((share > 0.002) & (share < 0.05)).all(), share
    assert (trace.load_bps[~nan] >= 0).all()
    drawn = hospital_day(2)  # missing rate drawn per slice: small, some slices none
    assert np.isnan(drawn.load_bps).mean() < 0.02


def test_step_multiplies_the_load_after_it_exactly() -> None:
    plain = hospital_day(5)
    stepped = hospital_day(5, step=(1.4, 0.5))
    half = DAY_AT_10S // 2
    np.testing.assert_array_equal(stepped.load_bps[:half], plain.load_bps[:half])
    ratio = np.nanmean(stepped.load_bps[half:], axis=0) / np.nanmean(plain.load_bps[half:], axis=0)
    np.testing.assert_allclose(ratio, 1.4, rtol=1e-12)
    assert RegimeStep.parse("1.4@0.25") == RegimeStep(1.4, 0.25)
    assert RegimeStep(2.0, 0.25).first_interval(100) == 25


def test_on_off_slices_have_heavy_upper_tails_and_idle_intervals() -> None:
    trace = generate_heldout_trace(
        HOSPITAL, seed=0, n_intervals=DAY_AT_10S, interval_s=10.0, family="on-off", missing_rate=0
    )
    for i, name in enumerate(trace.slices):
        load = trace.load_bps[:, i, :].sum(axis=1)
        active = load[load > 0]
        p999 = np.quantile(load, 0.999)
        gaussian_p999 = load.mean() + 3.09 * load.std()  # a normal law with the same moments
        assert p999 > 1.2 * gaussian_p999, name
        assert p999 / np.median(active) > 3.0, name
        assert (load == 0).mean() > 0.01, name


def test_on_periods_are_truncated_pareto() -> None:
    sessions = OnOffSessions(
        n_sources=2,
        on_min_s=10.0,
        on_alpha=1.3,
        on_cap_s=2_000.0,
        off_mean_s=30.0,
        off_alpha=None,
        rate_sigma=0.0,
        jitter_sigma_10s=0.0,
    )
    flat = DiurnalProfile(0.0, 1.0, 0.0, 0.0, 1.0, 0.0)  # no thinning: every session starts
    horizon = 10 * 86_400.0
    clock = DiurnalClock(flat, 0.0, horizon, np.random.default_rng(0))
    pulses = sessions.pulses(horizon, clock, np.random.default_rng(1), ul_ratio=0.5)
    inside = (pulses.start_s > 0) & (pulses.end_s < horizon)
    on = (pulses.end_s - pulses.start_s)[inside]
    assert on.min() >= 10.0
    assert on.max() <= 2_000.0
    assert on.mean() == pytest.approx(sessions.mean_on_s(), rel=0.1)
    for multiple in (10.0, 50.0):  # P(ON > k x_m) = k^-alpha
        assert (on > multiple * 10.0).mean() == pytest.approx(multiple**-1.3, rel=0.25)
    np.testing.assert_array_equal(pulses.rate_bps[:, 0], 1.0)


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: p.stem)
def test_every_bundled_policy_generates_within_its_limits(policy: Path) -> None:
    loaded = load_policy(policy)
    trace = generate_heldout_trace(
        loaded, seed=7, n_intervals=DAY_AT_10S, interval_s=10.0, missing_rate=0.0
    )
    assert trace.slices == loaded.slice_names
    assert np.isfinite(trace.load_bps).all()
    assert (trace.load_bps >= 0).all()
    for i, slice_ in enumerate(loaded.slices):
        for k, direction in enumerate(DIRECTIONS):
            load = trace.load_bps[:, i, k]
            maximum = slice_.maximum_bps(direction)
            if math.isfinite(maximum):
                assert (load > maximum).mean() < 0.1, (slice_.name, direction)
                assert np.median(load) < maximum, (slice_.name, direction)


def test_uplink_is_below_downlink_for_most_but_not_all_slices() -> None:
    ratios = [
        recipe.ul_ratio
        for seed in range(10)
        for recipe in heldout_recipes(ROOT / "policies" / "campus.yaml", seed)
    ]
    uplink_heavy = np.mean(np.array(ratios) > 1.0)
    assert 0.05 < uplink_heavy < 0.5


def test_diurnal_peaks_are_not_aligned_and_families_mix() -> None:
    recipes = [r for seed in range(10) for r in heldout_recipes(HOSPITAL, seed)]
    peaks = {round(r.diurnal.peak_hour) % 24 for r in recipes}
    assert len(peaks) > 12
    assert {r.primary.family for r in recipes} == set(FAMILIES)
    assert any(r.secondary is not None for r in recipes)


@pytest.mark.parametrize("interval_s", [1.0, 10.0, 900.0])
def test_interval_lengths_from_1_s_to_15_min(interval_s: float) -> None:
    n = round(6 * 3_600 / interval_s)
    trace = hospital_day(4, n_intervals=n, interval_s=interval_s, missing_rate=0.0)
    assert trace.load_bps.shape == (n, 5, 2)
    assert trace.interval_s == interval_s
    assert np.isfinite(trace.load_bps).all()
    assert (trace.load_bps >= 0).all()


def test_1_s_and_10_s_traces_of_one_seed_share_their_events() -> None:
    fine = hospital_day(6, n_intervals=21_600, interval_s=1.0, missing_rate=0.0)
    coarse = hospital_day(6, n_intervals=2_160, interval_s=10.0, missing_rate=0.0)
    aggregated = fine.load_bps.reshape(2_160, 10, 5, 2).mean(axis=1)
    np.testing.assert_allclose(aggregated.mean(axis=0), coarse.load_bps.mean(axis=0), rtol=0.15)
    for i in range(5):
        assert np.corrcoef(aggregated[:, i, 0], coarse.load_bps[:, i, 0])[0, 1] > 0.5


def test_interval_means_average_pulses_exactly() -> None:
    pulses = Pulses(np.array([5.0, 12.0]), np.array([25.0, 13.0]), np.array([[10.0, 1.0]] * 2))
    means = interval_means(pulses, 4, 10.0)
    np.testing.assert_allclose(means[:, 0], [5.0, 11.0, 5.0, 0.0])
    assert means[3].tolist() == [0.0, 0.0]  # exactly: no pulse overlaps the last interval


def test_soft_ceiling_is_identity_below_the_knee_and_bounded() -> None:
    load = np.array([0.0, 5.0, 10.0, 11.0, 100.0, 1e9])
    bent = soft_ceiling(load, 10.0, 20.0)
    np.testing.assert_array_equal(bent[:3], load[:3])
    assert (np.diff(bent) >= 0).all()
    assert bent.max() <= 20.0
    assert bent[3] > 10.0
    np.testing.assert_array_equal(soft_ceiling(load, math.inf, math.inf), load)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"interval_s": 0.0}, "interval must be a positive"),
        ({"interval_s": -10.0}, "interval must be a positive"),
        ({"interval_s": 3_600.0}, "outside"),
        ({"n_intervals": 0}, "at least 1"),
        ({"seed": -1}, "seed must be"),
        ({"family": "fractal"}, "unknown family"),
        ({"step": (0.0, 0.5)}, "factor must be"),
        ({"step": (1.4, 1.5)}, "position must be"),
        ({"missing_rate": 0.9}, "missing rate"),
    ],
)
def test_bad_arguments_raise_clear_errors(options: dict[str, Any], message: str) -> None:
    arguments: dict[str, Any] = {"seed": 0, "n_intervals": 10, "interval_s": 10.0}
    arguments.update(options)
    with pytest.raises(HeldoutError, match=message):
        generate_heldout_trace(HOSPITAL, **arguments)


def test_unknown_policy_file_is_a_policy_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read file"):
        generate_heldout_trace(tmp_path / "nope.yaml", seed=0, n_intervals=10, interval_s=10.0)


def test_no_slice_name_is_written_in_the_generator() -> None:
    source = "\n".join(p.read_text() for p in (ROOT / "sims" / "heldout").glob("*.py"))
    names = {name for policy in POLICIES for name in load_policy(policy).slice_names}
    assert not [name for name in names if name in source]


def test_cli_writes_a_long_csv_and_one_line_per_slice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "heldout.csv"
    argv = ["--policy", str(HOSPITAL), "--seed", "3", "--days", "0.25", "--interval", "10s"]
    assert main([*argv, "--step", "1.4@0.5", "-o", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 + 5
    assert "2160 intervals of 10 s" in lines[0]
    assert all("mean" in line and "p99" in line and "above max" in line for line in lines[1:])
    written = Trace.concat(read_long_csv(out, slices=load_policy(HOSPITAL).slice_names))
    expected = hospital_day(3, n_intervals=2_160, step=RegimeStep(1.4, 0.5))
    np.testing.assert_allclose(written.load_bps, expected.load_bps, atol=1e-3, equal_nan=True)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--policy", str(HOSPITAL), "--interval", "0s"], "interval must be positive"),
        (["--policy", str(HOSPITAL), "--interval", "ten"], "cannot read"),
        (["--policy", "missing.yaml"], "cannot read file"),
        (["--policy", str(HOSPITAL), "--step", "x@y"], "cannot read step"),
    ],
)
def test_cli_bad_arguments_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err
