"""Replay and the live service run the same planner: driven by the same trace and the
same forecaster, they allocate the same rates, interval by interval."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sliceai.engine import LOCAL_ADMIN, BwRequest, Engine, EngineSettings, StateStore
from sliceai.engine.clock import ManualClock
from sliceai.planning import EwmaForecaster, Forecaster, RollingQuantileForecaster
from sliceai.planning.forecasters import FloatArray, IntArray
from sliceai.policy import loads_policy
from sliceai.replay import PlannerAllocator

POLICY = Path(__file__).resolve().parents[2] / "policies" / "hospital.yaml"
START = 1_764_547_200.0
INTERVAL = 1.0


class ClockedForecaster(Forecaster):
    """Rolling quantiles plus a term from each origin's time of day, so that a forecast
    made for the wrong time (a misaligned history) shows."""

    name = "clocked"

    def __init__(self) -> None:
        self.inner = RollingQuantileForecaster(window=20)

    def history_length(self, interval_s: float) -> int:
        return 20

    def quantiles_at(
        self,
        history: FloatArray,
        origins: IntArray,
        levels: FloatArray,
        start_time: float,
        interval_s: float,
        horizon: int = 1,
    ) -> FloatArray:
        q = self.inner.quantiles_at(history, origins, levels, start_time, interval_s, horizon)
        when = start_time + np.asarray(origins) * interval_s  # epoch s of each origin
        bump = 1e6 * (1.0 + np.sin(2 * np.pi * when / 37.0))
        return np.asarray(q + bump[:, None, None, None])


def _trace(n: int, n_slices: int) -> np.ndarray:
    rng = np.random.default_rng(5)
    base = np.array([5e5, 2e7, 6e6, 1e6, 8e7])[:n_slices]
    load = base[None, :, None] * rng.lognormal(0.0, 0.4, (n, n_slices, 2))
    load[30:, 1] *= 3.0  # a step, so that the risk control has misses to react to
    return load


@pytest.mark.parametrize(
    "make", [ClockedForecaster, lambda: EwmaForecaster(window=16)], ids=["clocked", "ewma"]
)
def test_replay_and_live_loop_allocate_the_same_rates(tmp_path: Path, make) -> None:
    text = POLICY.read_text(encoding="utf-8")
    policy = loads_policy(text)
    n = 60
    load = _trace(n, len(policy.slices))

    replayed = PlannerAllocator("same", make())
    replayed.start(policy, policy.slice_names, INTERVAL, START)
    replay_rates = np.concatenate(
        [replayed.allocate_chunk(load[:25]), replayed.allocate_chunk(load[25:])]
    )

    clock = ManualClock(epoch_s=START)
    engine = Engine(
        StateStore(tmp_path / "s.db"),
        text,
        make(),
        settings=EngineSettings(interval_s=INTERVAL),
        clock=clock.clock,
    )
    names = policy.slice_names
    live_rates, modes = [], []
    for t in range(n - 1):
        engine.ingest("ctl", clock.clock.wall(), INTERVAL, names, load[t, :, 0], load[t, :, 1])
        clock.advance(INTERVAL)  # the interval ends; the loop plans the next one
        plan = engine.loop.step()
        live_rates.append(plan.rates_bps)
        modes.append(plan.mode)
    engine.stop()

    assert set(modes) == {"optimized"}
    # The live plan made after interval t is the replay's row t + 1.
    np.testing.assert_allclose(np.array(live_rates), replay_rates[1:], rtol=1e-9, atol=1e-3)
    assert not np.allclose(replay_rates[1:], replay_rates[1])  # the rates do move
    # ... and the risk control moved some level in both (the same way, since the rates agree).
    moved = engine.state.planner.risk.miscoverage != replayed.planner.risk.alpha
    assert moved.any()
    np.testing.assert_allclose(
        engine.state.planner.risk.miscoverage, replayed.planner.risk.miscoverage
    )


def test_a_grant_enters_the_live_plan_as_a_floor(tmp_path: Path) -> None:
    text = POLICY.read_text(encoding="utf-8")
    clock = ManualClock(epoch_s=START)
    engine = Engine(StateStore(tmp_path / "s.db"), text, ClockedForecaster(), clock=clock.clock)
    engine.request_grant(LOCAL_ADMIN, BwRequest("a", "staff-embb", 300_000_000, "dl"))
    clock.advance(INTERVAL)
    plan = engine.loop.step()
    assert plan.rates_bps[4, 0] >= 300e6
    engine.stop()
