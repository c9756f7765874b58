"""``serve --adapt``: one adaptation round on a stored history, run synchronously: a better
challenger takes the pool's model place (metric, log, saved checkpoint, resumed after a
restart), a worse one does not; too little history skips the round."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch

from sliceai.api.adapt import (
    ADAPTED_KEY,
    AdaptDecision,
    AdaptError,
    AdaptSettings,
    ModelAdapter,
    build_adapter,
)
from sliceai.api.commands import long_duration_s
from sliceai.api.metrics import ServiceMetrics
from sliceai.cli import main
from sliceai.engine import Engine, EngineSettings, StateStore
from sliceai.engine.clock import ManualClock
from sliceai.forecast.config import ForecastConfig
from sliceai.forecast.forecaster import ModelForecaster
from sliceai.forecast.model import ForecastModel
from sliceai.forecast.pipeline import ForecastPipeline
from sliceai.forecast.training.finetune import FinetuneOptions, FinetuneResult
from sliceai.planning import Forecaster, RollingQuantileForecaster
from sliceai.planning.loading import pooled
from sliceai.planning.pool import PooledForecaster
from sliceai.traffic import Trace

INTERVAL = 60.0
#: Untrained and tiny: it forecasts the stored history badly.
TINY = ForecastConfig(
    context_length=32,
    max_horizon=8,
    hidden_size=16,
    step_embed_size=8,
    decoder_hidden_size=16,
    rank=2,
)
QUICK = FinetuneOptions(
    learning_rate=1e-2,
    epochs=3,
    steps_per_epoch=25,
    batch_size=64,
    validation_windows=128,
    tail_windows=64,
    device="cpu",
    progress=False,
)


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _tiny_pipeline() -> ForecastPipeline:
    torch.manual_seed(0)
    return ForecastPipeline(ForecastModel(TINY).eval(), device="cpu")


@pytest.fixture
def engine(tmp_path: Path, policy_text: str) -> Engine:
    clock = ManualClock()
    return Engine(
        StateStore(tmp_path / "state.db"),
        policy_text,
        pooled(ModelForecaster(_tiny_pipeline())),
        settings=EngineSettings(interval_s=INTERVAL),
        clock=clock.clock,
    )


def _fill(engine: Engine, intervals: int) -> None:
    """Store ``intervals`` of a history whose rates switch every 4 intervals."""
    start = engine.clock.wall() - intervals * INTERVAL
    rows = []
    for k in range(intervals):
        for j, name in enumerate(engine.policy.slice_names):
            rate = 1e6 * (j + 1) * (8.0 if (k + j) % 8 >= 4 else 1.0)
            rows.append((start + k * INTERVAL, name, INTERVAL, rate, rate / 4))
    engine.store.add_telemetry(rows)


def _settings(tmp_path: Path, **kw: object) -> AdaptSettings:
    return AdaptSettings(
        every_s=3600.0,
        min_history_s=12 * 3600.0,
        finetune=QUICK,
        models_dir=tmp_path / "models",
        **kw,  # type: ignore[arg-type]
    )


def _one_round(
    engine: Engine, adapter: ModelAdapter, caplog: pytest.LogCaptureFixture
) -> tuple[AdaptDecision, ServiceMetrics, PooledForecaster, Forecaster]:
    """Fill the store with a day, run one round with metrics attached: the decision, the
    metrics, the engine's pool and the model it held before."""
    _fill(engine, 1440)
    metrics = ServiceMetrics()
    adapter.on_decision.append(metrics.observe_adaptation)
    pool = engine.forecaster
    assert isinstance(pool, PooledForecaster)
    before = pool.members[0]
    with caplog.at_level(logging.INFO, logger="sliceai.api.adapt"):
        decision = adapter.run_once()
    gauge = metrics.registry.get_sample_value
    assert gauge("sliceai_model_champion_crps") == decision.champion_crps
    assert gauge("sliceai_model_challenger_crps") == decision.challenger_crps
    assert f"model adaptation: {decision.outcome}" in caplog.text
    return decision, metrics, pool, before


def _count(metrics: ServiceMetrics, outcome: str) -> float | None:
    return metrics.registry.get_sample_value(
        "sliceai_model_adaptations_total", {"outcome": outcome}
    )


@pytest.mark.slow
def test_a_better_challenger_is_swapped_in_counted_logged_and_resumed_after_a_restart(
    engine: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    adapter = ModelAdapter(engine, engine.store, _settings(tmp_path))
    decision, metrics, pool, before = _one_round(engine, adapter, caplog)
    assert decision.outcome == "swapped", decision.reason
    assert decision.challenger_crps < 0.8 * decision.champion_crps
    assert (decision.history, decision.held_back) == (1224, 216)
    now = pool.members[0]
    assert now is not before
    assert isinstance(now, ModelForecaster)
    assert adapter.champion is now.pipeline
    assert _count(metrics, "swapped") == 1.0
    assert decision.checkpoint is not None
    assert decision.checkpoint.parent == tmp_path / "models"
    # the plan goes on with the new model
    history = np.full((10, 300), 2e6)
    q = pool.quantiles(history, np.array([0.5, 0.9]), 1.7e9, INTERVAL)
    assert np.isfinite(q).all()
    # a restart with --adapt over the same --model starts from the adapted one
    saved = engine.store.load_state(ADAPTED_KEY)
    assert isinstance(saved, dict)
    assert saved["path"] == str(decision.checkpoint)
    fresh = pooled(ModelForecaster(_tiny_pipeline()))
    engine.forecaster = fresh
    again = ModelAdapter(engine, engine.store, _settings(tmp_path))
    assert again.resume("cpu") == decision.checkpoint
    first = fresh.members[0]
    assert isinstance(first, ModelForecaster)
    assert first.pipeline.config.tail_linear == now.pipeline.config.tail_linear
    other = ModelAdapter(engine, engine.store, _settings(tmp_path, base="/some/other/model"))
    assert other.resume("cpu") is None


def _worse(
    champion: ForecastPipeline,
    traces: Sequence[Trace],
    options: FinetuneOptions,
    cancel: threading.Event,
) -> tuple[ForecastPipeline, FinetuneResult]:
    """A challenger that forecasts about 150 times the level."""
    model = ForecastModel(champion.config)
    model.load_state_dict(champion.model.state_dict())
    with torch.no_grad():
        model.decoder_out.bias[3] += 50.0  # the absolute loc head: +5 in log space
    return ForecastPipeline(model.eval(), device="cpu"), FinetuneResult()


def test_a_worse_challenger_is_not_swapped_in(
    engine: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    adapter = ModelAdapter(engine, engine.store, _settings(tmp_path), tune=_worse)
    decision, metrics, pool, before = _one_round(engine, adapter, caplog)
    assert decision.outcome == "kept"
    assert decision.challenger_crps > decision.champion_crps
    assert pool.members[0] is before
    assert _count(metrics, "kept") == 1.0
    assert _count(metrics, "swapped") is None
    assert not (tmp_path / "models").exists()
    assert engine.store.load_state(ADAPTED_KEY) is None


def test_too_little_history_skips_the_round(engine: Engine, tmp_path: Path) -> None:
    adapter = ModelAdapter(engine, engine.store, _settings(tmp_path), tune=_worse)
    assert adapter.run_once().outcome == "skipped"  # nothing stored
    _fill(engine, 100)
    decision = adapter.run_once()
    assert decision.outcome == "skipped"
    assert "720 needed" in decision.reason


def test_a_failing_round_is_reported_and_leaves_the_model(engine: Engine, tmp_path: Path) -> None:
    _fill(engine, 1440)

    def broken(*args: object) -> tuple[ForecastPipeline, FinetuneResult]:
        raise RuntimeError("out of memory")

    adapter = ModelAdapter(engine, engine.store, _settings(tmp_path), tune=broken)
    pool = engine.forecaster
    assert isinstance(pool, PooledForecaster)
    before = pool.members[0]
    decision = adapter.run_once()
    assert decision.outcome == "failed"
    assert "out of memory" in decision.reason
    assert pool.members[0] is before


def test_only_the_pooled_model_can_be_adapted(tmp_path: Path, policy_text: str) -> None:
    store = StateStore(tmp_path / "s.db")
    engine = Engine(store, policy_text, RollingQuantileForecaster())
    with pytest.raises(AdaptError, match="generative model"):
        build_adapter(engine, store, every_s=60.0, min_history_s=60.0, minutes=1.0)


def test_the_thread_runs_rounds_and_stops(engine: Engine, tmp_path: Path) -> None:
    adapter = ModelAdapter(
        engine, engine.store, dataclasses.replace(_settings(tmp_path), every_s=0.01), tune=_worse
    )
    seen = threading.Event()
    adapter.on_decision.append(lambda decision: seen.set())
    adapter.start()
    try:
        assert seen.wait(10)
    finally:
        adapter.stop()
    assert adapter.last is not None
    assert adapter.last.outcome == "skipped"


@pytest.mark.parametrize(
    ("text", "seconds"), [("6h", 21600.0), ("90min", 5400.0), ("2d", 172800.0), ("30", 30.0)]
)
def test_adapt_durations(text: str, seconds: float) -> None:
    assert long_duration_s(text) == seconds


@pytest.mark.parametrize("text", ["soon", "0h", "-1d"])
def test_bad_adapt_durations(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        long_duration_s(text)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--model", "empirical"], "--adapt needs the generative model"),
        (["--adapt-minutes", "0"], "--adapt-minutes must be positive"),
    ],
)
def test_serve_adapt_usage_errors_before_touching_state(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    db = tmp_path / "state.db"
    code = main(["serve", "--db", str(db), "--adapt", "--listen", "127.0.0.1:0", *extra])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not db.exists()
