"""The idle probability: a point mass at 0 next to the Gaussian, in samples and quantiles."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from forecast_configs import SMALL, train_options
from scipy.special import ndtri

from sliceai.forecast import ForecastPipeline
from sliceai.forecast.metrics import crps_ensemble
from sliceai.forecast.model import ForecastModel, HorizonDistribution
from sliceai.forecast.training.data import Series
from sliceai.forecast.training.loss import marginal_crps
from sliceai.forecast.training.train import train

ZERO = dataclasses.replace(SMALL, zero_inflated=True)


def _pipeline(idle_logit: float) -> ForecastPipeline:
    torch.manual_seed(0)
    model = ForecastModel(ZERO).eval()
    with torch.no_grad():
        model.decoder_out.weight[-1].zero_()
        model.decoder_out.bias[-1] = idle_logit
    return ForecastPipeline(model, device="cpu")


def _context(batch: int) -> np.ndarray:
    return np.random.default_rng(0).lognormal(np.log(1e6), 0.3, size=(batch, 32))


def test_quantiles_match_samples_with_an_idle_mass() -> None:
    pipe = _pipeline(idle_logit=float(np.log(0.3 / 0.7)))  # idle with probability 0.3
    levels = (0.1, 0.25, 0.4, 0.6, 0.9)
    q = pipe.quantiles(_context(2), 3, levels)
    assert np.all(q[..., :2] == 0.0)
    assert np.all(q[..., 2:] > 0.0)
    s = pipe.sample(_context(2), 3, 40000, seed=1)
    assert np.mean(s == 0.0) == pytest.approx(0.3, abs=0.01)
    emp = np.moveaxis(np.quantile(s, levels[2:], axis=1), 0, -1)
    np.testing.assert_allclose(emp, q[..., 2:], rtol=0.05)


def test_a_path_that_goes_idle_stays_idle() -> None:
    loc = torch.ones(1, 5)
    rising = torch.tensor([[0.1, 0.3, 0.5, 0.7, 0.9]])
    dist = HorizonDistribution(loc, torch.full((1, 5), 0.1), torch.zeros(1, 5, 1), rising)
    gen = torch.Generator().manual_seed(0)
    paths = dist.switch_off(dist.sample(5000, gen), gen)[0]
    idle = (paths == 0).numpy()
    assert np.all(idle[:, 1:] >= idle[:, :-1])  # once 0, 0 for the rest of the horizon
    np.testing.assert_allclose(idle.mean(axis=0), rising[0].numpy(), atol=0.03)


@pytest.mark.parametrize("p", [0.0, 0.2, 0.7])
@pytest.mark.parametrize("y", [0.0, 0.4, 2.5])
def test_closed_form_crps_matches_the_ensemble(p: float, y: float) -> None:
    dist = HorizonDistribution(
        torch.tensor([[1.0]], dtype=torch.float64),
        torch.tensor([[0.5]], dtype=torch.float64),
        torch.zeros(1, 1, 1, dtype=torch.float64),
        torch.tensor([[p]], dtype=torch.float64) if p else None,
    )
    closed = float(marginal_crps(dist, torch.tensor([[y]], dtype=torch.float64))[0, 0])
    rng = np.random.default_rng(0)
    members = np.where(rng.random(200_000) < p, 0.0, rng.normal(1.0, 0.5, 200_000))
    assert closed == pytest.approx(float(crps_ensemble(members, np.array(y))), abs=2e-3)


def test_tiny_model_learns_the_idle_probability(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)

    def series(n: int, length: int) -> list[Series]:
        out = []
        for k in range(n):
            busy = rng.random(length) >= 0.4
            values = np.where(busy, 1e6 * rng.lognormal(0.0, 0.2, size=length), 0.0)
            out.append(Series(f"s{k}", values, 1.7e9, 60.0))
        return out

    opts = train_options(4)
    train(series(8, 3000), series(2, 600), tmp_path, ZERO, opts)
    pipe = ForecastPipeline.load(tmp_path, device="cpu")
    q = pipe.quantiles(np.stack([s.values[-32:] for s in series(32, 32)]), 4, (0.3, 0.5))
    assert np.mean(q[..., 0] == 0.0) > 0.9  # the 30% quantile is idle
    # The median is busy: the 1/6 quantile of the busy lognormal ((0.5 - 0.4) / 0.6).
    busy_median = 1e6 * np.exp(0.2 * ndtri(1.0 / 6.0))
    assert np.median(q[..., 1]) == pytest.approx(busy_median, rel=0.15)
    plain = ForecastModel(dataclasses.replace(ZERO, zero_inflated=False))
    assert sum(p.numel() for p in plain.parameters()) < sum(
        p.numel() for p in pipe.model.parameters()
    )
