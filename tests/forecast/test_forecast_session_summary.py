"""The session summary: level and volatility of the current session of an on-off series."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from forecast_configs import SMALL

from sliceai.forecast import ForecastConfig, ForecastError, ForecastPipeline
from sliceai.forecast.model import (
    MIN_SESSION_POINTS,
    ForecastModel,
    context_summary,
    session_summary,
)

SESSION = dataclasses.replace(SMALL, zero_inflated=True, session_summary=True)


def _onset(idle: int, active: int, level: float = 3.0, noise: float = 0.02) -> torch.Tensor:
    """``idle`` zeros then ``active`` log values around ``level``."""
    rng = np.random.default_rng(0)
    on = level + noise * rng.standard_normal(active)
    return torch.tensor(np.concatenate([np.zeros(idle), on])[None], dtype=torch.float32)


def test_a_calm_session_after_its_onset_is_calm() -> None:
    values = _onset(idle=40, active=24)
    mask = torch.ones_like(values)
    level, vol, inputs = session_summary(values, mask)
    _, whole_vol = context_summary(values, mask)
    on = values[0, 40:]
    assert level.item() == pytest.approx(on[-16:].mean().item(), rel=1e-6)
    assert vol.item() == pytest.approx(np.sqrt(on.var(unbiased=False).item() + 1e-6), rel=1e-4)
    assert whole_vol.item() > 50 * vol.item()  # the onset's step read as volatility
    age, idle_share = inputs[0].tolist()
    assert age == pytest.approx(np.log1p(24) / np.log1p(64), rel=1e-6)
    assert idle_share == pytest.approx(40 / 64, rel=1e-6)


@pytest.mark.parametrize("active", [0, 1, MIN_SESSION_POINTS - 1])
def test_idle_now_or_a_young_session_reads_the_whole_context(active: int) -> None:
    values = _onset(idle=60, active=active)
    mask = torch.ones_like(values)
    level, vol, inputs = session_summary(values, mask)
    whole_level, whole_vol = context_summary(values, mask)
    assert level.item() == pytest.approx(whole_level.item())
    assert vol.item() == pytest.approx(whole_vol.item())
    assert inputs[0, 0].item() == pytest.approx(np.log1p(active) / np.log1p(60 + active))


def test_missing_points_are_not_idle() -> None:
    """A gap (mask 0, value 0 as the features fill it) does not end a session."""
    values = _onset(idle=0, active=50)
    mask = torch.ones_like(values)
    values[0, 30:35] = 0.0
    mask[0, 30:35] = 0.0
    level, vol, inputs = session_summary(values, mask)
    assert inputs[0, 1].item() == 0.0  # nothing idle
    assert inputs[0, 0].item() == pytest.approx(np.log1p(45) / np.log1p(50))
    assert (level.item(), vol.item()) == pytest.approx(
        tuple(x.item() for x in context_summary(values, mask))
    )


def test_a_session_model_forecasts_saves_and_reloads(tmp_path: Path) -> None:
    torch.manual_seed(0)
    pipe = ForecastPipeline(ForecastModel(SESSION).eval(), device="cpu")
    rng = np.random.default_rng(1)
    context = np.concatenate([np.zeros((3, 20)), rng.lognormal(15, 0.1, (3, 12))], axis=1)
    q = pipe.quantiles(context, 4, (0.1, 0.5, 0.9))
    assert q.shape == (3, 4, 3)
    assert np.all(np.isfinite(q))
    pipe.save(tmp_path / "m")
    again = ForecastPipeline.load(tmp_path / "m", device="cpu")
    assert again.config.session_summary is True
    np.testing.assert_array_equal(again.quantiles(context, 4, (0.1, 0.5, 0.9)), q)


def test_configs_without_the_field_read_as_before_and_bad_values_are_refused() -> None:
    raw = json.loads(SMALL.to_json())
    del raw["session_summary"]
    assert ForecastConfig.from_json(json.dumps(raw)).session_summary is False
    with pytest.raises(ForecastError, match="session_summary"):
        dataclasses.replace(SMALL, session_summary=1)  # type: ignore[arg-type]
