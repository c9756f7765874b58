"""``fast_below_s``: a second checkpoint, in ``fast/``, forecasts the faster clocks."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from forecast_configs import TINY

from sliceai.forecast import ForecastError, ForecastPipeline
from sliceai.forecast.checkpoint import FAST_DIR
from sliceai.forecast.model import ForecastModel

BELOW = 30.0
ROUTED = dataclasses.replace(TINY, fast_below_s=BELOW)


def _model(config: object, seed: int) -> ForecastModel:
    torch.manual_seed(seed)
    return ForecastModel(config).eval()  # type: ignore[arg-type]


def _pipelines() -> tuple[ForecastPipeline, ForecastPipeline, ForecastPipeline]:
    """(routed, its slow networks alone, its fast networks alone): different weights."""
    slow_model, fast_model = _model(ROUTED, 1), _model(TINY, 2)
    fast = ForecastPipeline(fast_model, device="cpu")
    routed = ForecastPipeline(slow_model, device="cpu", fast=fast)
    alone = ForecastPipeline(_model(TINY, 1), device="cpu")
    return routed, alone, fast


def _context() -> np.ndarray:
    rng = np.random.default_rng(0)
    return 5e6 * np.exp(0.3 * rng.standard_normal((3, 40)))


@pytest.mark.parametrize(
    ("interval_s", "which"), [(1.0, "fast"), (10.0, "fast"), (30.0, "slow"), (60.0, "slow")]
)
def test_calls_below_the_clock_go_to_the_fast_networks(interval_s: float, which: str) -> None:
    routed, slow, fast = _pipelines()
    want = fast if which == "fast" else slow
    assert routed.at(interval_s) is (fast if which == "fast" else routed)
    ctx, levels = _context(), (0.1, 0.5, 0.99)
    got_q = routed.quantiles(ctx, 4, levels, interval_s=interval_s)
    np.testing.assert_array_equal(got_q, want.quantiles(ctx, 4, levels, interval_s=interval_s))
    got_s = routed.sample(ctx, 4, 8, interval_s=interval_s, seed=3)
    np.testing.assert_array_equal(got_s, want.sample(ctx, 4, 8, interval_s=interval_s, seed=3))
    other = slow if which == "fast" else fast
    assert not np.array_equal(got_q, other.quantiles(ctx, 4, levels, interval_s=interval_s))
    # Horizons past one pass are drawn block by block by the same networks.
    long = routed.sample(ctx, 12, 4, interval_s=interval_s, seed=5)
    np.testing.assert_array_equal(long, want.sample(ctx, 12, 4, interval_s=interval_s, seed=5))


def test_save_and_load_keep_both_checkpoints(tmp_path: Path) -> None:
    routed, _, _ = _pipelines()
    routed.save(tmp_path / "ckpt", note="test")
    assert (tmp_path / "ckpt" / FAST_DIR / "model.safetensors").is_file()
    loaded = ForecastPipeline.load(tmp_path / "ckpt", device="cpu")
    assert loaded.config == ROUTED
    assert loaded.fast is not None
    assert loaded.fast.config == TINY
    ctx = _context()
    for interval_s in (10.0, 60.0):
        np.testing.assert_array_equal(
            loaded.quantiles(ctx, 4, interval_s=interval_s),
            routed.quantiles(ctx, 4, interval_s=interval_s),
        )
    int8 = ForecastPipeline.load(tmp_path / "ckpt", device="cpu", quantize="int8")
    assert int8.fast is not None
    assert int8.fast.quantize == "int8"
    assert int8.quantiles(ctx, 4, interval_s=10.0).shape == (3, 4, 3)


def test_missing_or_mismatched_fast_checkpoint_is_refused(tmp_path: Path) -> None:
    routed, _, _ = _pipelines()
    routed.save(tmp_path / "ckpt")
    shutil.rmtree(tmp_path / "ckpt" / FAST_DIR)
    with pytest.raises(ForecastError, match="not a forecast checkpoint"):
        ForecastPipeline.load(tmp_path / "ckpt", device="cpu")
    with pytest.raises(ForecastError, match="fast_below_s is 30"):
        ForecastPipeline(_model(ROUTED, 1), device="cpu")
    plain = ForecastPipeline(_model(TINY, 2), device="cpu")
    with pytest.raises(ForecastError, match=r"needs config\.fast_below_s > 0"):
        ForecastPipeline(_model(TINY, 1), device="cpu", fast=plain)
    shorter = ForecastPipeline(_model(dataclasses.replace(TINY, max_horizon=4), 2), device="cpu")
    with pytest.raises(ForecastError, match="same context_length and max_horizon"):
        ForecastPipeline(_model(ROUTED, 1), device="cpu", fast=shorter)


@pytest.mark.parametrize("bad", [-1.0, float("inf"), "10", True])
def test_bad_fast_clock_is_rejected(bad: Any) -> None:
    with pytest.raises(ForecastError, match="fast_below_s"):
        dataclasses.replace(TINY, fast_below_s=bad)


def test_older_configs_have_no_fast_checkpoint(tmp_path: Path) -> None:
    raw = json.loads(TINY.to_json())
    del raw["fast_below_s"]
    assert type(TINY).from_json(json.dumps(raw)).fast_below_s == 0.0
