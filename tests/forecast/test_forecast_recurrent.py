"""``recurrent_window``: a GRU over the most recent context points feeds the encoder."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from forecast_configs import SMALL

from sliceai.forecast import ForecastConfig, ForecastError, ForecastPipeline
from sliceai.forecast.features import N_CALENDAR, N_SERIES_FEATURES
from sliceai.forecast.model import LEVEL_WINDOW, VOLATILITY_WINDOW, ForecastModel

RECURRENT = dataclasses.replace(SMALL, zero_inflated=True, recurrent_window=8, recurrent_size=4)


def _gru_state(model: ForecastModel, values: torch.Tensor) -> torch.Tensor:
    """The GRU's last state for the contexts ``values`` (all observed)."""
    seen: list[torch.Tensor] = []
    assert model.recurrent is not None
    handle = model.recurrent.register_forward_hook(lambda _m, _i, out: seen.append(out[1]))
    batch, horizon = values.shape[0], model.config.max_horizon
    with torch.no_grad():
        model(
            values,
            torch.ones_like(values),
            torch.zeros(batch, N_SERIES_FEATURES),
            torch.zeros(batch, horizon, N_CALENDAR),
        )
    handle.remove()
    return seen[0][-1]


def test_the_gru_reads_the_window_and_nothing_older() -> None:
    # A context longer than the level and volatility windows: a point older than all three
    # windows changes nothing the GRU reads; the newest point does.
    length = VOLATILITY_WINDOW + 32
    assert length - RECURRENT.recurrent_window > VOLATILITY_WINDOW >= LEVEL_WINDOW
    torch.manual_seed(0)
    model = ForecastModel(dataclasses.replace(RECURRENT, context_length=length)).eval()
    values = 3.0 + 0.1 * torch.randn(1, length, generator=torch.Generator().manual_seed(1))
    base = _gru_state(model, values)
    assert base.shape == (1, RECURRENT.recurrent_size)
    old, new = values.clone(), values.clone()
    old[0, 0] += 2.0
    new[0, -1] += 2.0
    torch.testing.assert_close(_gru_state(model, old), base, rtol=0, atol=0)
    assert (_gru_state(model, new) - base).abs().max().item() > 1e-4


def test_a_recurrent_model_forecasts_saves_reloads_and_quantizes(tmp_path: Path) -> None:
    torch.manual_seed(0)
    pipe = ForecastPipeline(ForecastModel(RECURRENT).eval(), device="cpu")
    rng = np.random.default_rng(1)
    context = np.concatenate([np.zeros((3, 20)), rng.lognormal(15, 0.1, (3, 12))], axis=1)
    levels = (0.1, 0.5, 0.9)
    q = pipe.quantiles(context, 4, levels)
    assert q.shape == (3, 4, 3)
    assert np.all(np.isfinite(q))
    pipe.save(tmp_path / "m")
    again = ForecastPipeline.load(tmp_path / "m", device="cpu")
    assert again.config.recurrent_window == RECURRENT.recurrent_window
    np.testing.assert_array_equal(again.quantiles(context, 4, levels), q)
    # int8: the Linear layers are quantized, the GRU runs in fp32; the body of the
    # forecast stays (the 0.1 quantile of an untrained model sits in its idle lump).
    int8 = ForecastPipeline.load(tmp_path / "m", device="cpu", quantize="int8")
    q8 = int8.quantiles(context, 4, levels)
    assert q8.shape == q.shape
    np.testing.assert_allclose(q8[..., 1:], q[..., 1:], rtol=0.1)
    modules = list(int8.model.modules())
    assert any(type(m).__module__.startswith("torch.ao.nn.quantized") for m in modules)
    assert any(isinstance(m, torch.nn.GRU) for m in modules)


def test_a_window_longer_than_the_context_reads_the_whole_context() -> None:
    torch.manual_seed(0)
    config = dataclasses.replace(RECURRENT, recurrent_window=4 * SMALL.context_length)
    pipe = ForecastPipeline(ForecastModel(config).eval(), device="cpu")
    q = pipe.quantiles(np.full((2, 10), 1e6), 4, (0.5, 0.99))
    assert q.shape == (2, 4, 2)
    assert np.all(q[..., 1] >= q[..., 0])


def test_configs_without_the_field_have_no_gru_and_bad_values_are_refused() -> None:
    raw = json.loads(SMALL.to_json())
    del raw["recurrent_window"], raw["recurrent_size"]
    config = ForecastConfig.from_json(json.dumps(raw))
    assert config.recurrent_window == 0
    assert ForecastModel(config).recurrent is None
    for bad in (-1, True, 1.5, "8"):
        with pytest.raises(ForecastError, match="recurrent_window"):
            dataclasses.replace(SMALL, recurrent_window=bad)  # type: ignore[arg-type]
    with pytest.raises(ForecastError, match="recurrent_size"):
        dataclasses.replace(SMALL, recurrent_size=0)
