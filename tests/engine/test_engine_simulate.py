"""`serve --simulate`: a bundled scenario played as a live telemetry source."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from sliceai.engine import Engine, EngineSettings, StateStore
from sliceai.engine.simulate import SOURCE_ID, SimulationError, Simulator
from sliceai.planning import RollingQuantileForecaster

ROOT = Path(__file__).resolve().parents[2]


def test_campus_scenario_drives_the_campus_policy(tmp_path: Path) -> None:
    text = (ROOT / "policies" / "campus.yaml").read_text()
    engine = Engine(
        StateStore(tmp_path / "s.db"),
        text,
        RollingQuantileForecaster(),
        settings=EngineSettings(interval_s=0.05),
    )
    sim = Simulator(engine, "campus", intervals=32)
    assert set(sim.slices) == set(engine.policy.slice_names)
    sim.start()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and sim.step < 3:
            time.sleep(0.01)
        plan = engine.loop.step()
    finally:
        sim.stop()
        engine.store.close()
    assert sim.step >= 3
    assert SOURCE_ID in engine.buffer.sources()
    assert np.isfinite(plan.measured_bps).all()
    assert plan.measured_bps.sum() > 0


def test_scenario_without_common_slices_is_refused(tmp_path: Path) -> None:
    text = (ROOT / "policies" / "factory.yaml").read_text()
    engine = Engine(StateStore(tmp_path / "s.db"), text, RollingQuantileForecaster())
    with pytest.raises(SimulationError, match="none in common"):
        Simulator(engine, "hospital", intervals=8)
    with pytest.raises(SimulationError, match="no scenario"):
        Simulator(engine, "atlantis", intervals=8)
    engine.store.close()
