"""``max_log_std``: the bound on each forecast step's log-space spread."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from forecast_configs import SMALL

from sliceai.forecast import ForecastConfig, ForecastError
from sliceai.forecast.features import N_CALENDAR, N_SERIES_FEATURES
from sliceai.forecast.model import ForecastModel, HorizonDistribution

BOUND = 0.5


def _inputs(batch: int = 64) -> tuple[torch.Tensor, ...]:
    """Contexts from calm to wild, some idle: spreads on both sides of the bound."""
    gen = torch.Generator().manual_seed(0)
    values = torch.rand(batch, SMALL.context_length, generator=gen)
    values = values * torch.logspace(-3, 1, batch).unsqueeze(1)
    values[::5] = 0.0
    mask = torch.ones_like(values)
    calendar = torch.zeros(batch, SMALL.max_horizon, N_CALENDAR)
    return values, mask, torch.zeros(batch, N_SERIES_FEATURES), calendar


def test_the_bound_caps_the_spread_and_keeps_the_rest() -> None:
    config = dataclasses.replace(SMALL, zero_inflated=True)
    torch.manual_seed(0)
    free = ForecastModel(config).eval()
    with torch.no_grad():  # wide outputs: scale the spread heads up
        free.decoder_out.weight[1:3] *= 30.0
        free.decoder_out.bias[1:3] += 2.0
    bounded = ForecastModel(dataclasses.replace(config, max_log_std=BOUND)).eval()
    bounded.load_state_dict(free.state_dict())
    with torch.no_grad():
        a, b = free(*_inputs()), bounded(*_inputs())
    std_a, std_b = a.marginal_std(), b.marginal_std()
    over = std_a > BOUND
    assert over.float().mean().item() > 0.1  # the case is exercised
    assert (~over).float().mean().item() > 0.1
    torch.testing.assert_close(std_b[over], torch.full_like(std_b[over], BOUND))
    torch.testing.assert_close(std_b[~over], std_a[~over])
    torch.testing.assert_close(b.loc, a.loc)
    assert a.zero_prob is not None
    assert b.zero_prob is not None
    torch.testing.assert_close(b.zero_prob, a.zero_prob)

    # Correlations between steps are those of the unbounded forecast.
    def corr(d: HorizonDistribution) -> np.ndarray:
        f, s = d.factors, d.sigma
        cov = f @ f.transpose(1, 2) + torch.diag_embed(s.square())
        sd = torch.sqrt(torch.diagonal(cov, dim1=1, dim2=2))
        return (cov / (sd.unsqueeze(2) * sd.unsqueeze(1))).numpy()

    np.testing.assert_allclose(corr(b), corr(a), atol=1e-5)


def test_configs_without_the_field_are_unbounded_and_bad_values_are_refused() -> None:
    raw = json.loads(SMALL.to_json())
    del raw["max_log_std"]
    assert ForecastConfig.from_json(json.dumps(raw)).max_log_std == 0.0
    for bad in (-1.0, float("inf"), float("nan"), True, "2"):
        with pytest.raises(ForecastError, match="max_log_std"):
            dataclasses.replace(SMALL, max_log_std=bad)  # type: ignore[arg-type]
