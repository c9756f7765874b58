"""Seed ensembles: ``members`` independently trained models read as one equal-weight mixture.

A checkpoint with ``ForecastConfig.members = K > 1`` holds K networks of the same shape
(trained from different seeds). Their forecast is the mixture of their distributions:
sample paths are drawn ``n_samples / K`` from each member (so drawing costs about what one
model's does, plus K context encodings), and quantiles are the mixture's exact ones, found
by root-finding on the mixture CDF. One tail shape ``a z + b z^3``, fitted to the mixture's
interval coverage, reshapes every member's marginals.

Everything here works in the model's log space (``y = log1p(x / scale)``); a value below 0
is idle (0 bit/s), so the CDF at ``y >= 0`` counts the mass below 0 together with the idle
probability, as the pipeline's clamped quantiles do.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from scipy.special import ndtr, ndtri
from torch import nn

from sliceai.forecast.config import ForecastConfig
from sliceai.forecast.model import ForecastModel, HorizonDistribution

FloatArray = npt.NDArray[np.float64]
#: Most safeguarded Newton steps of the mixture quantile search (a step that would leave
#: the bracket halves it instead); it stops once no quantile moves by 1e-9 in log space.
QUANTILE_ITERATIONS = 40


class ForecastEnsemble(nn.Module):
    """``config.members`` :class:`ForecastModel` networks of the same config; forward gives
    one :class:`HorizonDistribution` per member."""

    def __init__(self, config: ForecastConfig) -> None:
        super().__init__()
        self.config = config
        self.members = nn.ModuleList(ForecastModel(config) for _ in range(config.members))

    def forward(self, *inputs: torch.Tensor) -> list[HorizonDistribution]:
        return [member(*inputs) for member in self.members]


def member_modules(model: nn.Module) -> list[nn.Module]:
    """The networks of a model: the members of a :class:`ForecastEnsemble` (also after
    int8 quantization), else the model itself."""
    members = getattr(model, "members", None)
    if isinstance(members, nn.ModuleList):
        return list(members)
    return [model]


def split_samples(n_samples: int, k: int) -> list[int]:
    """Sample paths per member: ``n_samples`` split as evenly as possible over ``k``."""
    return [n_samples // k + (1 if i < n_samples % k else 0) for i in range(k)]


def inverse_shape(t: Any, a: float, b: float) -> Any:
    """The ``z`` with ``a z + b z^3 = t`` (the tail shape is increasing: one real root)."""
    if b == 0.0:
        return t / a
    # Cardano for z^3 + p z - q = 0 with p = a / b > 0, q = t / b, then one Newton step.
    p, q = a / b, np.asarray(t, dtype=np.float64) / b
    root = np.sqrt((q / 2.0) ** 2 + (p / 3.0) ** 3)
    z = np.cbrt(q / 2.0 + root) + np.cbrt(q / 2.0 - root)
    return z - (a * z + b * z**3 - t) / (a + 3.0 * b * z**2)


def member_arrays(
    dists: Sequence[HorizonDistribution],
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """``(K, batch, horizon)`` float64 loc, marginal std and idle probability (0 without)."""
    loc = np.stack([d.loc.double().cpu().numpy() for d in dists])
    std = np.stack([d.marginal_std().double().cpu().numpy() for d in dists])
    p0 = np.stack(
        [
            np.zeros_like(loc[0]) if d.zero_prob is None else d.zero_prob.double().cpu().numpy()
            for d in dists
        ]
    )
    return loc, std, p0


def mixture_cdf(
    y: FloatArray,
    loc: FloatArray,
    std: FloatArray,
    p0: FloatArray,
    a: float,
    b: float,
    density: bool = False,
) -> tuple[FloatArray, FloatArray | None]:
    """Mixture CDF (and density) at ``y`` ``(batch, horizon, Q)`` for members' ``loc``,
    ``std``, ``p0`` ``(K, batch, horizon)`` with the tail shape ``(a, b)``."""
    lo, sd, p = loc[..., None], std[..., None], p0[..., None]
    z = inverse_shape((y[None] - lo) / sd, a, b)
    cdf = (p + (1.0 - p) * ndtr(z)).mean(axis=0)
    if not density:
        return cdf, None
    pdf = (1.0 - p) * np.exp(-0.5 * z**2) / (np.sqrt(2.0 * np.pi) * sd * (a + 3.0 * b * z**2))
    return cdf, pdf.mean(axis=0)


def member_quantiles(
    loc: FloatArray, std: FloatArray, p0: FloatArray, levels: FloatArray, a: float, b: float
) -> FloatArray:
    """``(K, batch, horizon, Q)`` each member's quantiles in log space (below 0: idle)."""
    p = p0[..., None]
    rest = np.clip((levels - p) / np.maximum(1.0 - p, 1e-12), 1e-12, 1.0 - 1e-12)
    z = ndtri(rest)
    y = loc[..., None] + std[..., None] * (a * z + b * z**3)
    out: FloatArray = np.where(levels <= p, -np.inf, y)
    return out


def mixture_quantiles(
    loc: FloatArray, std: FloatArray, p0: FloatArray, levels: FloatArray, a: float, b: float
) -> FloatArray:
    """``(batch, horizon, Q)`` quantiles of the equal-weight mixture in log space, clamped
    at 0 (idle).

    The mixture's quantile at a level lies between its members' ones at that level: a
    safeguarded Newton search inside that bracket from their mean, on the quantiles not
    yet converged only (members of a seed ensemble agree closely: a few steps).
    """
    k = loc.shape[0]
    each = np.maximum(member_quantiles(loc, std, p0, levels, a, b), 0.0)  # (K, B, H, Q)
    shape = each.shape[1:]
    n = int(np.prod(shape))
    lo_b, hi_b = each.min(axis=0).reshape(n), each.max(axis=0).reshape(n)
    x = each.mean(axis=0).reshape(n)
    lv = np.broadcast_to(levels, shape).reshape(n)
    # Member parameters per quantile: (K, n).
    expand = (k, *shape)
    m_loc = np.broadcast_to(loc[..., None], expand).reshape(k, n)
    m_std = np.broadcast_to(std[..., None], expand).reshape(k, n)
    m_p0 = np.broadcast_to(p0[..., None], expand).reshape(k, n)
    # At or below the mixture's mass at 0 (idle or below): 0.
    f0 = _cdf_pdf(np.zeros(n), m_loc, m_std, m_p0, a, b)[0]
    idle = lv <= f0
    active = np.flatnonzero(~idle & (hi_b > lo_b))
    for _ in range(QUANTILE_ITERATIONS):
        if active.size == 0:
            break
        xa, la, ha = x[active], lo_b[active], hi_b[active]
        cdf, pdf = _cdf_pdf(xa, m_loc[:, active], m_std[:, active], m_p0[:, active], a, b)
        below = cdf < lv[active]
        la = np.where(below, xa, la)
        ha = np.where(below, ha, xa)
        with np.errstate(divide="ignore", invalid="ignore"):
            step = xa - (cdf - lv[active]) / pdf
        inside = np.isfinite(step) & (step >= la) & (step <= ha)
        new = np.where(inside, step, 0.5 * (la + ha))
        x[active], lo_b[active], hi_b[active] = new, la, ha
        done = (np.abs(new - xa) <= 1e-9 * (1.0 + np.abs(new))) | (ha - la <= 1e-9)
        active = active[~done]
    out: FloatArray = np.where(idle, 0.0, np.maximum(x, 0.0)).reshape(shape)
    return out


def _cdf_pdf(
    x: FloatArray, loc: FloatArray, std: FloatArray, p0: FloatArray, a: float, b: float
) -> tuple[FloatArray, FloatArray]:
    """Mixture CDF and density at ``x`` ``(n,)`` for members' parameters ``(K, n)``."""
    z = inverse_shape((x - loc) / std, a, b)
    cdf = (p0 + (1.0 - p0) * ndtr(z)).mean(axis=0)
    pdf = (1.0 - p0) * np.exp(-0.5 * z**2) / (np.sqrt(2.0 * np.pi) * std * (a + 3.0 * b * z**2))
    return cdf, pdf.mean(axis=0)


def mixture_covered(
    y: FloatArray,
    loc: FloatArray,
    std: FloatArray,
    p0: FloatArray,
    coverage: float,
    a: float,
    b: float,
) -> npt.NDArray[np.bool_]:
    """Whether targets ``y`` ``(batch, horizon)`` (log space, 0 = idle) lie in the mixture's
    central ``coverage`` interval, counted as the evaluation counts it in bit/s (bounds
    below 0 are 0): inside when ``F(y) >= lower level`` and (``y == 0`` or ``F(y) <=
    upper level``), with ``F`` the CDF in log space."""
    cdf, _ = mixture_cdf(y[..., None], loc, std, p0, a, b)
    f = cdf[..., 0]
    lo_level, hi_level = (1.0 - coverage) / 2.0, (1.0 + coverage) / 2.0
    inside: npt.NDArray[np.bool_] = (f >= lo_level) & ((y <= 0.0) | (f <= hi_level))
    return inside


__all__ = [
    "ForecastEnsemble",
    "inverse_shape",
    "member_modules",
    "mixture_cdf",
    "mixture_covered",
    "mixture_quantiles",
    "split_samples",
]
