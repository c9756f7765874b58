"""Checkpoints: save/load round trip, corrupt and mismatched files, int8, devices."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from sliceai.forecast import ForecastConfig, ForecastError, ForecastPipeline, resolve_device
from sliceai.forecast.checkpoint import (
    CONFIG_FILE,
    FAST_DIR,
    WEIGHTS_FILE,
    default_checkpoint,
    load_model,
    save_model,
    stored_half,
)


def _ctx() -> np.ndarray:
    return np.random.default_rng(0).lognormal(12.0, 0.4, size=(3, 32))


def test_round_trip_gives_identical_forecasts(
    tiny_pipeline: ForecastPipeline, tiny_checkpoint: Path
) -> None:
    loaded = ForecastPipeline.load(tiny_checkpoint, device="cpu")
    assert loaded.config == tiny_pipeline.config
    assert loaded.metadata["note"] == "test"
    np.testing.assert_array_equal(
        loaded.sample(_ctx(), 5, 7, seed=3), tiny_pipeline.sample(_ctx(), 5, 7, seed=3)
    )
    # The weights file alone also names the checkpoint.
    again = ForecastPipeline.load(tiny_checkpoint / WEIGHTS_FILE, device="cpu")
    np.testing.assert_array_equal(again.quantiles(_ctx(), 3), loaded.quantiles(_ctx(), 3))


def test_half_precision_weights_load_as_fp32_and_forecast_alike(
    tiny_pipeline: ForecastPipeline, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    save_model(tiny_pipeline.model, tmp_path / "half", half=True, note="half")
    stored = load_file(str(tmp_path / "half" / WEIGHTS_FILE))
    assert {v.dtype for v in stored.values()} == {torch.float16}
    full_bytes = (tiny_checkpoint / WEIGHTS_FILE).stat().st_size
    assert (tmp_path / "half" / WEIGHTS_FILE).stat().st_size < 0.6 * full_bytes
    model, metadata = load_model(tmp_path / "half")
    assert metadata["note"] == "half"
    assert all(p.dtype == torch.float32 for p in model.parameters())
    # Each weight is the fp32 one rounded to fp16; forecasts move by that rounding only.
    for name, value in model.state_dict().items():
        original = tiny_pipeline.model.state_dict()[name]
        torch.testing.assert_close(value, original.half().float(), rtol=0, atol=0)
    half = ForecastPipeline(model, device="cpu")
    q_half, q_full = half.quantiles(_ctx(), 8), tiny_pipeline.quantiles(_ctx(), 8)
    np.testing.assert_allclose(q_half, q_full, rtol=0.02)
    assert not np.array_equal(q_half, q_full)


def test_a_loaded_checkpoint_saves_back_in_the_precision_it_was_stored_in(
    tiny_pipeline: ForecastPipeline, tmp_path: Path
) -> None:
    save_model(tiny_pipeline.model, tmp_path / "half", half=True)
    save_model(tiny_pipeline.model, tmp_path / "full")
    assert stored_half(tmp_path / "half")
    assert not stored_half(tmp_path / "full")
    assert not stored_half(tmp_path / "missing")
    for name in ("half", "full"):
        loaded = ForecastPipeline.load(tmp_path / name, device="cpu")
        loaded.save(tmp_path / f"{name}-again")
        before = load_file(str(tmp_path / name / WEIGHTS_FILE))
        after = load_file(str(tmp_path / f"{name}-again" / WEIGHTS_FILE))
        assert before.keys() == after.keys()
        for key, value in before.items():
            assert after[key].dtype == value.dtype
            torch.testing.assert_close(after[key], value, rtol=0, atol=0)


def test_corrupt_weights(tiny_checkpoint: Path) -> None:
    path = tiny_checkpoint / WEIGHTS_FILE
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ForecastError, match="corrupt"):
        ForecastPipeline.load(tiny_checkpoint, device="cpu")


def test_garbage_config(tiny_checkpoint: Path) -> None:
    (tiny_checkpoint / CONFIG_FILE).write_text("{not json")
    with pytest.raises(ForecastError, match="JSON"):
        ForecastPipeline.load(tiny_checkpoint, device="cpu")


def test_config_that_does_not_match_weights(tiny_checkpoint: Path) -> None:
    (tiny_checkpoint / CONFIG_FILE).write_text(ForecastConfig(hidden_size=24).to_json())
    with pytest.raises(ForecastError, match="do not match"):
        ForecastPipeline.load(tiny_checkpoint, device="cpu")


def test_a_checkpoint_with_the_obsolete_session_summary_off_loads(tiny_checkpoint: Path) -> None:
    """Checkpoints written before the never-shipped session summary was removed say
    ``"session_summary": false``: they load alike, and the key is not kept as metadata."""
    before = ForecastPipeline.load(tiny_checkpoint, device="cpu")
    config = tiny_checkpoint / CONFIG_FILE
    raw = json.loads(config.read_text())
    config.write_text(json.dumps({**raw, "session_summary": False}))
    again = ForecastPipeline.load(tiny_checkpoint, device="cpu")
    assert again.config == before.config
    assert "session_summary" not in again.metadata
    np.testing.assert_array_equal(again.quantiles(_ctx(), 4), before.quantiles(_ctx(), 4))
    again.save(tiny_checkpoint / "saved")
    assert "session_summary" not in json.loads(
        (tiny_checkpoint / "saved" / CONFIG_FILE).read_text()
    )
    config.write_text(json.dumps({**raw, "session_summary": True}))
    with pytest.raises(ForecastError, match="session_summary"):
        ForecastPipeline.load(tiny_checkpoint, device="cpu")


def test_missing_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(ForecastError, match="not a forecast checkpoint"):
        ForecastPipeline.load(tmp_path / "nowhere", device="cpu")


def test_bad_config_values() -> None:
    with pytest.raises(ForecastError, match="rank"):
        ForecastConfig(rank=0)
    with pytest.raises(ForecastError, match="format_version"):
        ForecastConfig.from_json('{"format_version": 99}')


def test_int8_quantized_model_loads_and_predicts(tiny_checkpoint: Path) -> None:
    fp32 = ForecastPipeline.load(tiny_checkpoint, device="cpu")
    int8 = ForecastPipeline.load(tiny_checkpoint, device="cpu", quantize="int8")
    q8, q32 = int8.quantiles(_ctx(), 4, (0.1, 0.5, 0.9)), fp32.quantiles(_ctx(), 4, (0.1, 0.5, 0.9))
    assert q8.shape == q32.shape
    assert q8.dtype == np.float32
    np.testing.assert_allclose(q8, q32, rtol=0.1)
    assert any(type(m).__module__.startswith("torch.ao.nn.quantized") for m in int8.model.modules())
    with pytest.raises(ForecastError, match="cannot be saved"):
        int8.save(tiny_checkpoint / "again")
    with pytest.raises(ForecastError, match="unknown quantization"):
        ForecastPipeline.load(tiny_checkpoint, device="cpu", quantize="int4")


def test_device_auto_falls_back_to_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto").type == "cpu"
    with pytest.raises(ForecastError, match="no CUDA"):
        resolve_device("cuda")
    with pytest.raises(ForecastError, match="unknown device"):
        resolve_device("tpu")


def test_bundled_default_loads_offline() -> None:
    pipe = ForecastPipeline.load(device="cpu")
    # Issue #5: the shipped checkpoint (the main and the fast-clock ensembles) stays <= 5 MB.
    weights = [default_checkpoint() / WEIGHTS_FILE, default_checkpoint() / FAST_DIR / WEIGHTS_FILE]
    assert sum(w.stat().st_size for w in weights) <= 5_000_000
    # A seed ensemble, and one for the clocks below fast_below_s in fast/ (see
    # research/tests/test_default_model.py for the recipe's settings).
    assert pipe.config.members == len(pipe.members) > 1
    assert pipe.fast is not None
    assert pipe.at(10.0) is pipe.fast
    assert pipe.at(60.0) is pipe
    assert pipe.fast.config.seasonal_window == 0
    assert pipe.config.recurrent_window == 0
    assert not pipe.half_weights
    for interval_s in (60.0, 10.0):
        q = pipe.quantiles(_ctx(), 16, (0.5, 0.99), start_time=1.7e9, interval_s=interval_s)
        assert q.shape == (3, 16, 2)
        assert np.all(q[..., 1] >= q[..., 0])
