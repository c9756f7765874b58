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
#: Bounds on the log-space location and spread the bit/s CRPS term reads (the lognormal's
#: mean ``exp(loc + std^2 / 2)`` must stay finite in float32).
LINEAR_MAX_LOC = 25.0
LINEAR_MAX_STD = 3.0
#: A window's normalised bit/s CRPS ``c`` enters the loss as ``C log(1 + c / C)``: linear
#: for ordinary windows, logarithmic for the few unforeseeable onsets.
LINEAR_SOFT_CAP = 1.0


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


def linear_crps(dist: HorizonDistribution, target: torch.Tensor) -> torch.Tensor:
    """``(batch, horizon)`` closed-form CRPS of each step's marginal in units of the
    series' scale (bit/s / scale), where the evaluation scores it: ``x = exp(Y) - 1`` with
    ``Y`` the log-space Gaussian (``exp(Y)`` is lognormal), or with ``zero_prob`` 0.

    Uses ``E|L - u| = u (2 Phi(z) - 1) + m (1 - 2 Phi(z - s))`` and ``E|L - L'| = 2 m
    (2 Phi(s / sqrt 2) - 1)`` for ``L ~ LogNormal(mu, s)``, ``m = exp(mu + s^2 / 2)``,
    ``z = (log u - mu) / s``; location and spread are clamped to
    :data:`LINEAR_MAX_LOC` and :data:`LINEAR_MAX_STD`."""
    mu = dist.loc.clamp(max=LINEAR_MAX_LOC)
    s = dist.marginal_std().clamp(max=LINEAR_MAX_STD)
    m = torch.exp(mu + 0.5 * s.square())

    def to_point(log_u: torch.Tensor) -> torch.Tensor:  # E|L - u| for u = exp(log_u)
        z = (log_u - mu) / s
        return torch.exp(log_u) * (2.0 * _normal_cdf(z) - 1.0) + m * (
            1.0 - 2.0 * _normal_cdf(z - s)
        )

    to_y = to_point(target)
    pair = 2.0 * m * (2.0 * _normal_cdf(s / math.sqrt(2.0)) - 1.0)
    p = dist.zero_prob
    if p is None:
        return to_y - 0.5 * pair
    to_0 = to_point(torch.zeros_like(target))
    mixed_to_y = p * torch.expm1(target) + (1.0 - p) * to_y
    mixed_pair = 2.0 * p * (1.0 - p) * to_0 + (1.0 - p).square() * pair
    return mixed_to_y - 0.5 * mixed_pair


def linear_crps_loss(dist: HorizonDistribution, target: torch.Tensor) -> torch.Tensor:
    """Mean over windows of :func:`linear_crps`, each window's divided by ``max(its mean
    target in scale units, 1)`` (as validation scores) and softly capped
    (:data:`LINEAR_SOFT_CAP`)."""
    per_window = linear_crps(dist, target).mean(dim=1)
    norm = torch.expm1(target).mean(dim=1).clamp(min=1.0).detach()
    return (LINEAR_SOFT_CAP * torch.log1p(per_window / norm / LINEAR_SOFT_CAP)).mean()


def training_loss(
    dist: HorizonDistribution, target: torch.Tensor, linear_weight: float = 0.0
) -> torch.Tensor:
    """Winsorised joint negative log-likelihood per step plus the marginal CRPS (plus
    ``linear_weight`` times the bit/s CRPS of :func:`linear_crps_loss`).

    ``target``: ``(batch, horizon)`` in log space. The CRPS term trains every step's
    marginal robustly (and the idle probability, when there is one); the likelihood
    term also trains the correlation factors. With an idle probability, windows with
    an idle (exactly 0) step leave the likelihood out: the point mass explains those.
    The log-space terms weigh relative errors; the bit/s term weighs errors as the
    evaluation does (busy periods of a series count more than quiet ones).
    """
    horizon = target.shape[1]
    std = dist.marginal_std()
    bound = WINSOR_SD * std.detach()
    near = torch.minimum(
        torch.maximum(target, dist.loc.detach() - bound), dist.loc.detach() + bound
    )
    nll_each = -dist.log_prob(near) / horizon
    if dist.zero_prob is None:
        nll = nll_each.mean()
    else:
        busy = (target != 0).all(dim=1).to(nll_each.dtype)
        nll = (nll_each * busy).sum() / busy.sum().clamp(min=1.0)
    loss: torch.Tensor = nll + CRPS_WEIGHT * marginal_crps(dist, target).mean()
    if linear_weight > 0:
        loss = loss + linear_weight * linear_crps_loss(dist, target)
    return loss
