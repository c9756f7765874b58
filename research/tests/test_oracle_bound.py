"""The oracle bound (``research.forecast.generator_oracle``, used by ``oracle``): its
replay is the generator, its forecast is the generator's conditional law (calibrated,
exact where nothing is random)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from research.forecast import generator_oracle as oracle
from research.forecast import oracle as oracle_cli
from research.forecast.traces import HELD_OUT_SCENARIO
from sliceai.forecast.metrics import crps_ensemble
from sliceai.forecast.scenarios import START_EPOCH_S
from sliceai.traffic.generators import (
    Clock,
    bundled_scenarios,
    generate,
    load_scenario,
    resolve_slices,
)
from sliceai.traffic.scenario_model import Scenario

#: Intervals of history before the first forecast origin.
CONTEXT = 256


def _clock(scenario: Scenario, interval_s: float, days: float) -> Clock:
    n = round(days * 86400.0 / interval_s)
    return Clock(START_EPOCH_S, interval_s, n, scenario.utc_offset_h)


@pytest.mark.parametrize("name", [*bundled_scenarios(), HELD_OUT_SCENARIO])
@pytest.mark.parametrize("interval_s", [10.0, 60.0])
def test_replay_rebuilds_every_slice_of_the_generator(name: str, interval_s: float) -> None:
    scenario = load_scenario(name)
    clock = _clock(scenario, interval_s, 1.0)
    trace = generate(
        scenario, start=clock.start, n_intervals=clock.n, interval_s=interval_s, seed=7
    )
    for i, settings in enumerate(resolve_slices(scenario)):
        states = oracle.replay_slice(settings, clock, 7)
        rebuilt = oracle.reconstruct(states, settings.cap)
        np.testing.assert_allclose(rebuilt, trace.load_bps[:, i], rtol=1e-9, atol=1e-6)


def _one_slice(components: list[dict[str, object]]) -> Scenario:
    return Scenario.model_validate(
        {"name": "t", "slices": [{"name": "s", "components": components}]}
    )


def _oracle_run(
    scenario: Scenario, interval_s: float, days: float, paths: int
) -> tuple[np.ndarray, np.ndarray]:
    """Oracle paths ``(origins, horizon, paths)`` and targets ``(origins, horizon)``, UL."""
    clock = _clock(scenario, interval_s, days)
    settings = resolve_slices(scenario)[0]
    trace = generate(
        scenario, start=clock.start, n_intervals=clock.n, interval_s=interval_s, seed=3
    )
    states = oracle.replay_slice(settings, clock, 3)
    origins = np.arange(CONTEXT, clock.n - oracle.HORIZON + 1, oracle.HORIZON)
    values = trace.load_bps[:, 0, 1]
    targets = sliding_window_view(values, oracle.HORIZON)[origins]
    rng = np.random.default_rng(0)
    ens = oracle.oracle_paths(states, settings.cap, 1, origins, paths, rng)
    return ens, targets


def test_the_oracle_is_exact_where_nothing_is_random() -> None:
    scenario = _one_slice(
        [
            {"kind": "level", "rate": "10 Mbps", "day": [1.0 + h / 24 for h in range(24)]},
            {"kind": "cyclic", "low": "1 Mbps", "high": "1 Mbps", "shift": "8 h"},
        ]
    )
    ens, targets = _oracle_run(scenario, 60.0, 1.0, 8)
    np.testing.assert_allclose(ens, np.repeat(targets[..., None], 8, axis=-1), rtol=1e-12)
    assert float(crps_ensemble(ens, targets).max()) < 1e-6 * float(targets.mean())


@pytest.mark.parametrize(
    "component",
    [
        # busy non-exclusive sessions: running ones end, new ones arrive
        {
            "kind": "sessions",
            "per_hour": 30,
            "duration": {"median": "10 min", "sigma": 0.5},
            "rate": {"median": "5 Mbps", "sigma": 0.3},
            "noise": {"sigma": 0.1, "corr": "20 s"},
        },
        # a level with slow AR noise on a coarse grid and spikes
        {
            "kind": "level",
            "rate": "50 Mbps",
            "noise": {"sigma": 0.2, "corr": "5 min"},
            "spikes": {"per_hour": 40, "scale": "5 Mbps", "shape": 2.0, "length": "20 s"},
        },
    ],
    ids=["sessions", "level-ar-spikes"],
)
def test_the_oracle_is_calibrated(component: dict[str, object]) -> None:
    """The generator's own conditional law: about p of the targets lie below its p
    quantile (a wrong session end, noise state or spike law shifts these). Where the
    law has an atom (no spike; noise the generator interpolates between grid points the
    past already fixes) the target ties with the quantile: p lies between the shares
    strictly below and at most at it."""
    ens, targets = _oracle_run(_one_slice([component]), 10.0, 2.0, 200)
    for p in (0.1, 0.5, 0.9):
        q = np.quantile(ens, p, axis=-1)
        strictly = float(np.mean(targets < q * (1.0 - 1e-9)))
        at_most = float(np.mean(targets <= q * (1.0 + 1e-9)))
        assert strictly - 0.04 < p < at_most + 0.04, (p, strictly, at_most)


def test_running_sessions_end_after_the_time_they_have_run() -> None:
    from sliceai.traffic.scenario_model import LogNormalSetting

    setting = LogNormalSetting(median=600.0, sigma=0.5, max=3600.0)
    rng = np.random.default_rng(1)
    ran = np.full((20000,), 90.0)  # intervals of 10 s: 15 min, past the median
    length = oracle._lengths(setting, 10.0, ran.shape, rng, ran)
    assert length.min() >= 90
    assert length.max() <= 360
    # the truncated law against rejection sampling from the unconditional one
    free = oracle._lengths(setting, 10.0, (400000,), rng)
    kept = free[free >= 90]
    assert abs(np.mean(length) - np.mean(kept)) < 0.02 * np.mean(kept)
    assert abs(np.median(length) - np.median(kept)) <= 2


def test_the_oracle_beats_ewma_on_a_scenario() -> None:
    scores = oracle_cli.score_trace("hospital", 5, 60.0, 1.5, 50, None)
    assert {s.slice for s in scores} == {s.name for s in resolve_slices(load_scenario("hospital"))}
    assert all(s.model is None for s in scores)
    assert np.mean([s.oracle for s in scores]) < 0.9 * np.mean([s.ewma for s in scores])


def test_the_model_family_projection_keeps_idle_share_and_log_moments() -> None:
    """Per origin and step: the idle share and the busy paths' mean and spread in the
    model's log space survive; two well-apart modes become one (the family's limit)."""
    rng = np.random.default_rng(0)
    n = 20_000
    low, high = np.full(n // 2, 2e6), np.full(n // 2, 8e6)
    paths = np.concatenate([low, high]) * np.exp(0.05 * rng.standard_normal(n))
    paths[rng.random(n) < 0.3] = 0.0
    paths = np.broadcast_to(paths, (3, 2, n)).copy()
    scales = np.array([5e5, 1e6, 2e6])  # busy paths far above 0 in log space: no clipping
    out = oracle_cli.project_to_model_family(paths, scales, rng)
    assert out.shape == paths.shape
    for i, s in enumerate(scales):
        for x, y in ((paths[i, 0], out[i, 0]), (paths[i, 1], out[i, 1])):
            assert np.mean(y == 0) == pytest.approx(np.mean(x == 0), abs=0.03)
            lx, ly = np.log1p(x[x > 0] / s), np.log1p(y[y > 0] / s)
            assert ly.mean() == pytest.approx(lx.mean(), abs=0.02)
            assert ly.std() == pytest.approx(lx.std(), rel=0.05)
    between = (out > 3.5e6) & (out < 6.5e6)
    assert np.mean(between) > 0.1 > np.mean((paths > 3.5e6) & (paths < 6.5e6))


def test_context_means_are_the_mean_of_the_context_before_each_origin() -> None:
    values = np.arange(1000, dtype=np.float64)
    origins = np.array([10, 256, 700])
    got = oracle_cli.context_means(values, origins)
    want = [values[max(0, o - oracle_cli.CONTEXT) : o].mean() for o in origins]
    np.testing.assert_allclose(got, want)
    assert oracle_cli.context_means(np.zeros(300), np.array([280]))[0] == 1.0  # floored


def test_the_oracle_section_replaces_its_markers_only(tmp_path: Path) -> None:
    bench = tmp_path / "BENCHMARKS.md"
    bench.write_text("# Benchmarks\n\n<!-- bench:other:start -->\nkept\n<!-- bench:other:end -->\n")
    args = ["--interval", "60", "--days", "1.2", "--paths", "10", "--by-step"]
    assert oracle_cli.main([*args, "--markdown", str(bench)]) == 0
    text = bench.read_text()
    assert "kept" in text
    assert text.count("<!-- bench:forecast-oracle:start -->") == 1
    assert "### 60 s intervals" in text
    assert "oracle vs EWMA at steps 1, 2, 4, 8, 16" in text
    with pytest.raises(SystemExit):
        oracle_cli.main(["--paths", "1"])
