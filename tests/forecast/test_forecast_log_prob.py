"""The forecast's joint log density, which the training loss reads."""

from __future__ import annotations

import pytest
import torch

from sliceai.forecast.model import HorizonDistribution


def test_log_prob_survives_a_float32_cholesky_failure() -> None:
    """Large, nearly collinear factors over the smallest spread: float32 cannot factor the
    covariance (a 192-wide network's training stopped on it), float64 can."""
    torch.manual_seed(0)
    batch, horizon, rank = 4, 32, 8
    common = 1e3 * torch.randn(batch, horizon, 1)
    factors = common.expand(batch, horizon, rank) + 1e-4 * torch.randn(batch, horizon, rank)
    factors.requires_grad_(True)
    loc, sigma = torch.zeros(batch, horizon), torch.full((batch, horizon), 0.002)
    y = torch.zeros(batch, horizon)
    with pytest.raises(torch.linalg.LinAlgError):
        torch.distributions.LowRankMultivariateNormal(loc, factors, sigma.square()).log_prob(y)
    got = HorizonDistribution(loc, sigma, factors).log_prob(y)
    want = HorizonDistribution(loc.double(), sigma.double(), factors.double()).log_prob(y.double())
    assert got.dtype == torch.float32
    assert torch.all(torch.isfinite(got))
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-4)
    got.sum().backward()  # training goes on: the gradient reaches the factors
    assert factors.grad is not None
    assert torch.all(torch.isfinite(factors.grad))
