"""The bit/s CRPS term of the training loss: closed form against Monte Carlo, and finite."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sliceai.forecast.loss import linear_crps, linear_crps_loss, training_loss
from sliceai.forecast.metrics import crps_ensemble
from sliceai.forecast.model import HorizonDistribution


def _dist(zero_prob: bool) -> tuple[HorizonDistribution, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    b, h = 5, 3
    loc = (torch.randn(b, h, generator=g) + 1.0).double()
    sigma = (0.1 + 0.6 * torch.rand(b, h, generator=g)).double()
    p = (0.6 * torch.rand(b, h, generator=g)).double() if zero_prob else None
    factors = torch.zeros(b, h, 1, dtype=torch.float64)
    target = torch.cat([torch.zeros(b, 1), 3.0 * torch.rand(b, h - 1, generator=g)], 1)
    return HorizonDistribution(loc, sigma, factors, p), target.double()


@pytest.mark.parametrize("zero_prob", [False, True])
def test_linear_crps_matches_the_sampled_crps_in_scale_units(zero_prob: bool) -> None:
    dist, target = _dist(zero_prob)
    got = linear_crps(dist, target).numpy()
    rng = np.random.default_rng(1)
    n = 100_000
    y = dist.loc.numpy()[..., None] + dist.sigma.numpy()[..., None] * rng.standard_normal(
        (*target.shape, n)
    )
    x = np.expm1(y)
    if dist.zero_prob is not None:
        x[rng.random(x.shape) < dist.zero_prob.numpy()[..., None]] = 0.0
    want = crps_ensemble(x, np.expm1(target.numpy()))
    np.testing.assert_allclose(got, want, rtol=0.02, atol=0.01)


def test_linear_term_stays_finite_for_extreme_forecasts() -> None:
    loc = torch.tensor([[40.0, -5.0, 0.0]], requires_grad=True)
    sigma = torch.tensor([[50.0, 1e-3, 200.0]], requires_grad=True)
    dist = HorizonDistribution(loc, sigma, torch.zeros(1, 3, 2), torch.full((1, 3), 0.3))
    target = torch.tensor([[0.0, 20.0, 1.0]])
    loss = training_loss(dist, target, linear_weight=5.0)
    loss.backward()  # type: ignore[no-untyped-call]
    assert torch.isfinite(loss)
    assert loc.grad is not None
    assert sigma.grad is not None
    assert torch.isfinite(loc.grad).all()
    assert torch.isfinite(sigma.grad).all()
    # Soft cap: a hopeless window adds about log(1 + c), not c.
    assert float(linear_crps_loss(dist, target).detach()) < 30.0


def test_linear_weight_zero_leaves_the_loss_as_it_was() -> None:
    dist, target = _dist(True)
    base = training_loss(dist, target)
    assert torch.equal(base, training_loss(dist, target, linear_weight=0.0))
    assert float(training_loss(dist, target, linear_weight=1.0)) > float(base)
