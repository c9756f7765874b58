"""Seed ensembles: ``members`` independently trained models read as one equal-weight mixture.

A checkpoint with ``ForecastConfig.members = K > 1`` holds K networks of the same shape
(trained from different seeds). Their forecast is the mixture of their distributions:
sample paths are drawn ``n_samples / K`` from each member (so drawing costs about what one
model's does, plus K context encodings), and quantiles are the mixture's exact ones, found
by root-finding on the mixture CDF. One tail shape ``a z + b z^3``, fitted to the mixture
(:func:`sliceai.forecast.training.calibration.fit_shape`), reshapes every member's marginals.

Everything here works in the model's log space (``y = log1p(x / scale)``); a value below 0
is idle (0 bit/s), so the CDF at ``y >= 0`` counts the mass below 0 together with the idle
probability, as the pipeline's clamped quantiles do.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from scipy.special import ndtr, ndtri
from torch import nn

from sliceai.compiled import compiled
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


@compiled
def inverse_shape(t: Any, a: float, b: float) -> Any:
    """The ``z`` with ``a z + b z^3 = t`` (the tail shape is increasing: one real root),
    for a float or a float64 array ``t``."""
    if b == 0.0:
        return t / a
    # Cardano for z^3 + p z - q = 0 with p = a / b > 0, q = t / b, then one Newton step.
    p, q = a / b, t / b
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
    safeguarded Newton search inside that bracket from their mean (members of a seed
    ensemble agree closely: a few steps), one quantile at a time in compiled code
    (:func:`_mixture_search`).
    """
    k, batch, horizon = loc.shape
    each = np.maximum(member_quantiles(loc, std, p0, levels, a, b), 0.0)  # (K, B, H, Q)
    n = batch * horizon
    out = _mixture_search(
        np.ascontiguousarray(each.reshape(k, n, levels.size)),
        np.ascontiguousarray(loc.reshape(k, n)),
        np.ascontiguousarray(std.reshape(k, n)),
        np.ascontiguousarray(p0.reshape(k, n)),
        np.ascontiguousarray(levels, dtype=np.float64),
        float(a),
        float(b),
        QUANTILE_ITERATIONS,
    )
    return np.asarray(out.reshape(batch, horizon, levels.size))


@compiled
def _mixture_search(
    each: Any,
    loc: Any,
    std: Any,
    p0: Any,
    levels: Any,
    a: float,
    b: float,
    iterations: int,
) -> Any:
    """Mixture quantiles ``(n, Q)`` from members' quantiles ``each`` ``(K, n, Q)`` (>= 0)
    and parameters ``(K, n)``: 0 at or below the mixture's mass at 0, else safeguarded
    Newton steps on the mixture CDF inside the members' bracket (a step that would leave
    it halves the bracket instead) until a step moves less than 1e-9."""
    k, n, q = each.shape
    out = np.zeros((n, q))
    for i in range(n):
        f0 = _cdf_pdf_one(0.0, loc[:, i], std[:, i], p0[:, i], a, b)[0]
        for j in range(q):
            level = levels[j]
            if level <= f0:
                continue  # idle
            lo = np.inf
            hi = -np.inf
            x = 0.0
            for m in range(k):
                lo = min(lo, each[m, i, j])
                hi = max(hi, each[m, i, j])
                x += each[m, i, j]
            x /= k
            if hi > lo:
                for _ in range(iterations):
                    cdf, pdf = _cdf_pdf_one(x, loc[:, i], std[:, i], p0[:, i], a, b)
                    if cdf < level:
                        lo = x
                    else:
                        hi = x
                    step = x - (cdf - level) / pdf if pdf > 0 else np.nan
                    new = step if lo <= step <= hi else 0.5 * (lo + hi)
                    done = abs(new - x) <= 1e-9 * (1.0 + abs(new)) or hi - lo <= 1e-9
                    x = new
                    if done:
                        break
            out[i, j] = max(x, 0.0)
    return out


@compiled
def _cdf_pdf_one(x: float, loc: Any, std: Any, p0: Any, a: float, b: float) -> tuple[float, float]:
    """Mixture CDF and density at one ``x`` for members' parameters ``(K,)``."""
    k = loc.size
    cdf = 0.0
    pdf = 0.0
    for m in range(k):
        z = inverse_shape((x - loc[m]) / std[m], a, b)
        cdf += p0[m] + (1.0 - p0[m]) * 0.5 * math.erfc(-z / math.sqrt(2.0))
        pdf += (
            (1.0 - p0[m])
            * math.exp(-0.5 * z * z)
            / (math.sqrt(2.0 * math.pi) * std[m] * (a + 3.0 * b * z * z))
        )
    return cdf / k, pdf / k


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
    return _inside(cdf[..., 0], y, coverage)


def mixture_coverage(
    y: FloatArray,
    loc: FloatArray,
    std: FloatArray,
    p0: FloatArray,
    coverages: Sequence[float],
    a: float,
    b: float,
) -> FloatArray:
    """``(len(coverages),)`` fraction of ``y`` inside each central interval, as
    :func:`mixture_covered` counts it, from one evaluation of the CDF at ``y``."""
    cdf, _ = mixture_cdf(y[..., None], loc, std, p0, a, b)
    f = cdf[..., 0]
    return np.array([np.mean(_inside(f, y, c)) for c in coverages])


def _inside(f: FloatArray, y: FloatArray, coverage: float) -> npt.NDArray[np.bool_]:
    lo_level, hi_level = (1.0 - coverage) / 2.0, (1.0 + coverage) / 2.0
    inside: npt.NDArray[np.bool_] = (f >= lo_level) & ((y <= 0.0) | (f <= hi_level))
    return inside


__all__ = [
    "ForecastEnsemble",
    "inverse_shape",
    "member_modules",
    "mixture_cdf",
    "mixture_coverage",
    "mixture_covered",
    "mixture_quantiles",
    "split_samples",
]
