"""Health is NOT_SERVING until the model answered and the first plan is solved; metrics follow plans."""

from __future__ import annotations

import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

from sliceai.api.client import SliceaiClient
from sliceai.api.metrics import ServiceMetrics
from sliceai.api.server import ServerSettings, SliceaiServer
from sliceai.engine import Engine, EngineSettings, StateStore
from sliceai.planning import RollingQuantileForecaster


class GatedForecaster(RollingQuantileForecaster):
    """Blocks its first call until ``gate`` is set (a model still loading or warming up)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()

    def quantiles_at(self, *args: object, **kw: object) -> np.ndarray:
        self.gate.wait(30)
        return super().quantiles_at(*args, **kw)  # type: ignore[arg-type]


def test_health_turns_serving_only_after_warm_up(tmp_path: Path, policy_text: str) -> None:
    forecaster = GatedForecaster()
    engine = Engine(
        StateStore(tmp_path / "s.db"),
        policy_text,
        forecaster,
        settings=EngineSettings(interval_s=0.1),
    )
    server = SliceaiServer(engine, ServerSettings(listen="127.0.0.1:0"))
    starter = threading.Thread(target=server.start)
    starter.start()
    try:
        with SliceaiClient(f"127.0.0.1:{server.port}", timeout_s=5) as client:
            deadline = time.monotonic() + 10
            status = ""
            while time.monotonic() < deadline:
                try:
                    status = client.health()
                    break
                except Exception:
                    time.sleep(0.02)
            assert status == "NOT_SERVING"
            forecaster.gate.set()
            client.wait_serving(10)
            assert client.health("sliceai.v1.MecService") == "SERVING"
    finally:
        forecaster.gate.set()
        starter.join(10)
        server.stop(0.5)
        engine.store.close()


def test_metrics_expose_allocation_demand_forecast_and_latency(
    tmp_path: Path, policy_text: str
) -> None:
    engine = Engine(StateStore(tmp_path / "s.db"), policy_text, RollingQuantileForecaster())
    metrics = ServiceMetrics()
    metrics.attach(engine)
    names = engine.policy.slice_names
    for dl in (10e6, 10e6, 900e6):  # the last interval's demand exceeds what was allocated
        engine.ingest("ctl", time.time(), 1.0, names, np.full(5, dl), np.full(5, 1e6))
        engine.loop.step()
    port = metrics.serve_http(0)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
    finally:
        metrics.close()
        engine.store.close()
    assert 'sliceai_allocation_bps{direction="dl",slice="surgery-video"}' in text
    assert 'sliceai_demand_bps{direction="dl",slice="staff-embb"} 9e+08' in text
    assert 'sliceai_forecast_bps{direction="ul",slice="consults"}' in text
    assert 'sliceai_violations_total{direction="dl",slice="staff-embb"} 1.0' in text
    assert 'sliceai_plans_total{mode="optimized"} 3.0' in text
    assert "sliceai_loop_latency_seconds_count 3.0" in text
    assert "sliceai_plan_compute_seconds_count 3.0" in text
