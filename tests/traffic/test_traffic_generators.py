"""Scenario generators: reproducible, matching the policies, and statistically sensible."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sliceai.policy import load_policy
from sliceai.traffic.generators import (
    BUNDLED_DIR,
    ScenarioError,
    bundled_scenarios,
    generate,
    load_scenario,
    resolve_slices,
)

ROOT = Path(__file__).resolve().parents[2]
MONDAY = 1767571200.0  # 2026-01-05 00:00 UTC
HOUR = 3600.0


def _week(name: str, seed: int = 1, interval: float = 10.0) -> tuple[np.ndarray, tuple[str, ...]]:
    trace = generate(
        load_scenario(name),
        start=MONDAY,
        n_intervals=round(7 * 86400 / interval),
        interval_s=interval,
        seed=seed,
    )
    return trace.load_bps, trace.slices


@pytest.fixture(scope="module")
def hospital() -> tuple[np.ndarray, tuple[str, ...]]:
    return _week("hospital")


@pytest.fixture(scope="module")
def factory() -> tuple[np.ndarray, tuple[str, ...]]:
    return _week("factory")


def test_bundled_scenarios_and_their_copies_under_sims() -> None:
    assert set(bundled_scenarios()) >= {"hospital", "factory", "campus"}
    for name in bundled_scenarios():
        copy = ROOT / "sims" / "scenarios" / f"{name}.yaml"
        assert copy.read_text() == (BUNDLED_DIR / f"{name}.yaml").read_text()


@pytest.mark.parametrize("name", ["hospital", "factory", "campus"])
def test_slice_names_match_the_bundled_policies(name: str) -> None:
    policy_path = ROOT / "policies" / f"{name}.yaml"
    if not policy_path.exists():
        pytest.fail(f"{policy_path} is missing")
    names = tuple(s.name for s in resolve_slices(load_scenario(name)))
    assert names == load_policy(policy_path).slice_names


def test_campus_has_eight_slices() -> None:
    names = [s.name for s in resolve_slices(load_scenario("campus"))]
    assert names[-1] == "campus-embb"
    assert len(names) == 8


def test_same_seed_same_trace_other_seed_other_trace() -> None:
    scenario = load_scenario("campus")
    args = {"start": MONDAY, "n_intervals": 20_000, "interval_s": 1.0}
    a = generate(scenario, seed=5, **args).load_bps  # type: ignore[arg-type]
    b = generate(scenario, seed=5, **args).load_bps  # type: ignore[arg-type]
    c = generate(scenario, seed=6, **args).load_bps  # type: ignore[arg-type]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.isfinite(a).all()
    assert (a >= 0).all()


def test_a_slice_keeps_its_traffic_in_the_campus() -> None:
    args = {"start": MONDAY, "n_intervals": 5000, "interval_s": 1.0, "seed": 3}
    alone = generate(load_scenario("hospital"), **args)  # type: ignore[arg-type]
    campus = generate(load_scenario("campus"), **args)  # type: ignore[arg-type]
    np.testing.assert_array_equal(
        alone.load_bps[:, alone.slice_index("vitals")],
        campus.load_bps[:, campus.slice_index("vitals")],
    )


def _hours(n: int, interval: float = 10.0) -> tuple[np.ndarray, np.ndarray]:
    t = MONDAY + HOUR + interval * np.arange(n)  # local time is UTC+1 in the scenarios
    return (t / HOUR) % 24, ((t // 86400).astype(int) + 3) % 7


def test_embb_diurnal_and_weekly_rhythm(hospital: tuple[np.ndarray, tuple[str, ...]]) -> None:
    load, slices = hospital
    embb = load[:, slices.index("staff-embb"), 0]
    hour, weekday = _hours(len(embb))
    weekdays = weekday < 5
    peak = embb[weekdays & (hour >= 10) & (hour < 14)].mean()
    night = embb[weekdays & (hour >= 2) & (hour < 5)].mean()
    assert peak > 4 * night
    assert embb[weekdays].mean() > 1.3 * embb[~weekdays].mean()
    # heavy tail: flash crowds push the top well above the typical day level
    assert np.percentile(embb, 99.9) > 1.5 * np.percentile(embb, 50)


def test_surgery_sessions_are_bursty_scheduled_and_joint(
    hospital: tuple[np.ndarray, tuple[str, ...]],
) -> None:
    load, slices = hospital
    haptics = load[:, slices.index("surgery-haptics"), 1]
    video = load[:, slices.index("surgery-video"), 1]
    hour, weekday = _hours(len(video))
    in_surgery = video > 1e6
    assert 0.02 < in_surgery.mean() < 0.5
    # sessions start in weekday theatre hours (they may run past 17:00 but not past midnight)
    assert not in_surgery[weekday >= 5].any()
    assert not in_surgery[hour < 7.5].any()
    # the haptic loop runs exactly while the video runs
    np.testing.assert_array_equal(in_surgery, haptics > 100e3)
    # on/off: long runs, not flicker
    switches = np.count_nonzero(np.diff(in_surgery.astype(int)))
    assert switches <= 2 * 5 * 6
    on = video[in_surgery]
    assert 5e6 < np.median(on) < 35e6
    assert on.max() > 1.3 * np.median(on)  # I-frame spikes on top of the session rate


def test_consults_follow_clinic_hours(hospital: tuple[np.ndarray, tuple[str, ...]]) -> None:
    load, slices = hospital
    consults = load[:, slices.index("consults"), 0]
    hour, weekday = _hours(len(consults))
    assert consults[(weekday < 5) & (hour >= 9) & (hour < 11)].mean() > 5e6
    assert consults[weekday == 6].max() == 0.0
    assert np.percentile(consults[(weekday < 5) & (hour >= 9) & (hour < 17)], 50) < 20e6


def test_vitals_aggregate_thousands_of_monitors(
    hospital: tuple[np.ndarray, tuple[str, ...]],
) -> None:
    load, slices = hospital
    vitals_ul = load[:, slices.index("vitals"), 1]
    assert 2.5e6 < np.median(vitals_ul) < 4.5e6  # 2000 monitors x 200 B/s
    assert np.percentile(vitals_ul, 99) < 5e6  # inside the 5 Mbps guarantee nearly always


def test_factory_shifts_storms_and_night_bulk(factory: tuple[np.ndarray, tuple[str, ...]]) -> None:
    load, slices = factory
    hour, weekday = _hours(len(load))
    motion = load[:, slices.index("motion-control"), 0]
    assert motion[weekday == 6].max() < 0.2e6  # Sunday: idle keepalive only
    running = motion[(weekday < 5) & (hour >= 8) & (hour < 20)]
    assert running.min() > 0.5e6
    assert running.max() < 2.5e6
    bulk = load[:, slices.index("firmware-bulk"), 0]
    assert bulk[(hour >= 8) & (hour < 24)].max() < 1.0  # only after 01:00 (sessions end by ~07:00)
    assert bulk.max() > 50e6
    video = load[:, slices.index("video-inspection"), 1]
    assert 4e6 < np.median(video) < 25e6
    alarms = load[:, slices.index("safety-alarms"), 1]
    assert np.median(alarms) < 0.1e6
    assert alarms.max() <= 1.2e6 + 1e-6


def test_scenario_errors_name_file_and_field(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="no scenario 'nowhere'"):
        load_scenario("nowhere")
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: x\nslices:\n  - name: a\n    components:\n      - {kind: level, rate: 5 parsecs}\n"
    )
    with pytest.raises(ScenarioError, match=r"bad\.yaml: slices\.0\.components\.0\.level\.rate"):
        load_scenario(bad)
    bad.write_text(
        "name: x\nslices:\n  - name: a\n    components:\n      - {kind: level, rate: 1 Mbps, colour: red}\n"
    )
    with pytest.raises(ScenarioError, match="colour"):
        load_scenario(bad)
    with pytest.raises(ScenarioError, match="at least one interval"):
        generate(load_scenario("hospital"), start=MONDAY, n_intervals=0, interval_s=1.0, seed=0)
