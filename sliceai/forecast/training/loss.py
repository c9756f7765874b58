"""Training loss: a winsorised Gaussian-copula log-likelihood plus the closed-form CRPS.

See :func:`training_loss`.
"""

from __future__ import annotations

import math

import torch

from sliceai.forecast.model import HorizonDistribution

#: Targets further than this many marginal standard deviations from the forecast are
#: pulled in for the likelihood term (session onsets after an idle context are
#: unpredictable and would otherwise dominate the quadratic log-likelihood).
WINSOR_SD = 4.0
#: Weight of the per-step Gaussian CRPS (robust: grows linearly with the error).
CRPS_WEIGHT = 5.0
_INV_SQRT_PI = 1.0 / math.sqrt(math.pi)


def _normal_cdf(z: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1.0 + torch.erf(z / math.sqrt(2.0)))


def _abs_moment(z: torch.Tensor) -> torch.Tensor:
    """``E|Z - z|`` for a standard normal ``Z``."""
    cdf = _normal_cdf(z)
    pdf = torch.exp(-0.5 * z.square()) / math.sqrt(2.0 * math.pi)
    return z * (2.0 * cdf - 1.0) + 2.0 * pdf


def marginal_crps(dist: HorizonDistribution, target: torch.Tensor) -> torch.Tensor:
    """``(batch, horizon)`` closed-form CRPS of each step's marginal in log space: the
    Gaussian, or with ``zero_prob`` the mixture of a point mass at 0 and the Gaussian
    (``E|X - y| - E|X - X'| / 2`` with ``X = 0`` with probability ``p``)."""
    std = dist.marginal_std()
    gauss_to_y = std * _abs_moment((target - dist.loc) / std)  # E|G - y|
    gauss_pair = 2.0 * std * _INV_SQRT_PI  # E|G - G'|
    p = dist.zero_prob
    if p is None:
        return gauss_to_y - 0.5 * gauss_pair
    gauss_to_0 = std * _abs_moment(-dist.loc / std)  # E|G|
    to_y = p * target.abs() + (1.0 - p) * gauss_to_y
    pair = 2.0 * p * (1.0 - p) * gauss_to_0 + (1.0 - p).square() * gauss_pair
    return to_y - 0.5 * pair


def training_loss(
    dist: HorizonDistribution, target: torch.Tensor, batch_target: torch.Tensor | None = None
) -> torch.Tensor:
    """Winsorised joint negative log-likelihood per step plus the marginal CRPS.

    ``target``: ``(batch, horizon)`` in log space. The CRPS term trains every step's
    marginal robustly (and the idle probability, when there is one); the likelihood
    term also trains the correlation factors. With an idle probability, windows with
    an idle (exactly 0) step leave the likelihood out: the point mass explains those.

    ``batch_target``: when ``target`` is one block of rows of a batch split over
    processes, the whole batch's targets; the sums are then divided by the whole batch's
    counts, so the blocks' losses add up to the batch's loss.
    """
    whole = target if batch_target is None else batch_target
    horizon = target.shape[1]
    std = dist.marginal_std()
    bound = WINSOR_SD * std.detach()
    near = torch.minimum(
        torch.maximum(target, dist.loc.detach() - bound), dist.loc.detach() + bound
    )
    nll_each = -dist.log_prob(near) / horizon
    if dist.zero_prob is None:
        nll = nll_each.sum() / whole.shape[0]
    else:
        busy = (target != 0).all(dim=1).to(nll_each.dtype)
        n_busy = (whole != 0).all(dim=1).sum().to(nll_each.dtype)
        nll = (nll_each * busy).sum() / n_busy.clamp(min=1.0)
    crps = marginal_crps(dist, target).sum() / whole.numel()
    loss: torch.Tensor = nll + CRPS_WEIGHT * crps
    return loss
