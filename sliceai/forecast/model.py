"""The forecast network: an MLP encoder over the context and a per-step decoder.

With a ``recurrent_window`` a small GRU reads the most recent context points and the
encoder its last state. With a ``seasonal_window`` the encoder also reads the history one
day earlier around the forecast origin, and the decoder reads yesterday's value at each
step's time of day.

The output is a Gaussian over the whole horizon in the model's log space
(``y = log1p(x / scale)``, see :mod:`sliceai.forecast.features`) with a
low-rank-plus-diagonal covariance (a Gaussian copula with ``rank`` latent
factors), so drawing joint sample paths is one batched matrix product instead
of an autoregressive loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from sliceai.forecast.config import ForecastConfig
from sliceai.forecast.features import N_CALENDAR, N_SERIES_FEATURES

#: Number of most recent observed context points averaged for the level skip.
LEVEL_WINDOW = 16
#: Number of most recent context points whose spread sets the volatility baseline.
VOLATILITY_WINDOW = 64
#: Summary statistics computed from the context inside the model (level, log volatility).
N_SUMMARY = 2
#: Decoder heads per step before the factors: relative loc, relative and absolute
#: spread, absolute loc.
N_HEADS = 4
POSITION_EMBED_SIZE = 8
#: Per-step seasonal inputs of the decoder: yesterday's log value at the step's time of
#: day, the same standardised by today's level and volatility, and whether it was observed.
N_STEP_SEASONAL = 3


@dataclass(frozen=True)
class HorizonDistribution:
    """Joint Gaussian over ``horizon`` steps in log space.

    ``loc``: ``(batch, horizon)``; ``sigma``: ``(batch, horizon)`` per-step
    idiosyncratic standard deviation; ``factors``: ``(batch, horizon, rank)``.
    Covariance = ``factors @ factors.T + diag(sigma**2)``. ``zero_prob``: ``(batch,
    horizon)`` probability that a step is exactly 0 (an idle slice) instead of following
    the Gaussian, or None (never; :attr:`ForecastConfig.zero_inflated` off).
    """

    loc: torch.Tensor
    sigma: torch.Tensor
    factors: torch.Tensor
    zero_prob: torch.Tensor | None = None

    def switch_off(
        self, paths: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """``paths`` ``(batch, n_samples, horizon)`` with each step set to 0 (idle) with
        probability ``zero_prob``. One uniform per path decides every step (idle at step
        ``h`` when below ``zero_prob[h]``), so a path that goes idle as a session ends
        stays idle, and one that wakes up for an onset stays awake."""
        if self.zero_prob is None:
            return paths
        batch, n_samples, _ = paths.shape
        u = torch.rand(batch, n_samples, 1, generator=generator, device=paths.device)
        off = u < self.zero_prob.unsqueeze(1).to(u.dtype)
        return torch.where(off, torch.zeros_like(paths), paths)

    def marginal_std(self) -> torch.Tensor:
        """``(batch, horizon)`` standard deviation of each step."""
        return torch.sqrt(self.sigma.square() + self.factors.square().sum(dim=-1))

    def log_prob(self, y: torch.Tensor) -> torch.Tensor:
        """``(batch,)`` log density of targets ``y`` ``(batch, horizon)``.

        Large, nearly collinear factors over a spread near ``min_sigma`` can make the
        float32 Cholesky factor of the covariance fail; the density is then computed in
        float64 (only then: the float32 path, and so training, is otherwise unchanged)."""
        try:
            return _low_rank_log_prob(self.loc, self.factors, self.sigma, y)
        except torch.linalg.LinAlgError:  # type: ignore[attr-defined]
            parts = (self.loc, self.factors, self.sigma, y)
            return _low_rank_log_prob(*(t.double() for t in parts)).to(y.dtype)

    def sample(self, n_samples: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``(batch, n_samples, horizon)`` joint draws in log space."""
        batch, horizon, rank = self.factors.shape
        dev, dtype = self.loc.device, self.loc.dtype
        eps = torch.randn(batch, n_samples, horizon, generator=generator, device=dev, dtype=dtype)
        z = torch.randn(batch, n_samples, rank, generator=generator, device=dev, dtype=dtype)
        common = torch.bmm(z, self.factors.transpose(1, 2))
        paths: torch.Tensor = self.loc.unsqueeze(1) + self.sigma.unsqueeze(1) * eps + common
        return paths


def _low_rank_log_prob(
    loc: torch.Tensor, factors: torch.Tensor, sigma: torch.Tensor, y: torch.Tensor
) -> torch.Tensor:
    dist = torch.distributions.LowRankMultivariateNormal(
        loc, factors, sigma.square(), validate_args=False
    )
    out: torch.Tensor = dist.log_prob(y)  # type: ignore[no-untyped-call]
    return out


class RowDropout(nn.Module):
    """Dropout whose mask is drawn for the whole batch and then cut to ``rows``.

    Training on several processes (:mod:`sliceai.forecast.training.distributed`) gives
    each one a block of rows of the same batch; with ``rows = (start, stop, total)`` set,
    every process draws the mask for all ``total`` rows from the same seeded generator
    and keeps its own, so the units dropped are those one process would drop.
    ``rows`` None: the whole batch is this process's.
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p
        self.rows: tuple[int, int, int] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        start, stop, total = self.rows or (0, x.shape[0], x.shape[0])
        keep = torch.rand((total, *x.shape[1:]), device=x.device, dtype=x.dtype) >= self.p
        return x * keep[start:stop] / (1.0 - self.p)


class ForecastModel(nn.Module):
    """Context ``(batch, context_length)`` in, :class:`HorizonDistribution` out."""

    def __init__(self, config: ForecastConfig) -> None:
        super().__init__()
        self.config = config
        c, h, w = config.context_length, config.hidden_size, config.seasonal_window
        r = config.recurrent_window
        # Per point: standardised value, observed, idle.
        self.recurrent = nn.GRU(3, config.recurrent_size, batch_first=True) if r else None
        n_recurrent = config.recurrent_size if r else 0
        self.encoder_in = nn.Linear(3 * (c + w) + N_SERIES_FEATURES + N_SUMMARY + n_recurrent, h)
        self.encoder_hidden = nn.Linear(h, h)
        self.dropout = RowDropout(config.dropout)
        self.to_step = nn.Linear(h, config.step_embed_size)
        self.position = nn.Embedding(config.max_horizon, POSITION_EMBED_SIZE)
        step_lag = N_STEP_SEASONAL if w else 0
        self.decoder_in = nn.Linear(
            config.step_embed_size + POSITION_EMBED_SIZE + N_CALENDAR + step_lag,
            config.decoder_hidden_size,
        )
        extra = 1 if config.zero_inflated else 0
        self.decoder_out = nn.Linear(config.decoder_hidden_size, N_HEADS + config.rank + extra)
        if extra:  # start with idle steps improbable: the plain Gaussian
            with torch.no_grad():
                self.decoder_out.bias[-1] = -4.0
        self.linear_skip = nn.Linear(c + w, config.max_horizon)
        nn.init.zeros_(self.linear_skip.weight)
        nn.init.zeros_(self.linear_skip.bias)

    def forward(
        self,
        values: torch.Tensor,
        mask: torch.Tensor,
        series_features: torch.Tensor,
        step_calendar: torch.Tensor,
        seasonal: torch.Tensor | None = None,
        seasonal_mask: torch.Tensor | None = None,
    ) -> HorizonDistribution:
        """Shapes: ``values``, ``mask`` ``(batch, context_length)``; ``series_features``
        ``(batch, N_SERIES_FEATURES)``; ``step_calendar`` ``(batch, horizon, N_CALENDAR)``
        with ``horizon <= max_horizon``; ``seasonal``, ``seasonal_mask`` ``(batch,
        seasonal_window)`` (None: nothing observed a day earlier)."""
        horizon = step_calendar.shape[1]
        w = self.config.seasonal_window
        if seasonal is None or seasonal_mask is None:
            seasonal = values.new_zeros(values.shape[0], w)
            seasonal_mask = values.new_zeros(values.shape[0], w)
        act = nn.functional.gelu
        level, volatility = context_summary(values, mask)
        log_vol = torch.log(volatility)
        # The context standardised by its own level and volatility: calm and busy
        # series look alike, so the network's corrections scale with the series.
        vol = volatility.unsqueeze(1)
        z = ((values - level.unsqueeze(1)) / vol).clamp(-10.0, 10.0) * mask
        z_lag = ((seasonal - level.unsqueeze(1)) / vol).clamp(-10.0, 10.0) * seasonal_mask
        summary = torch.stack([level, log_vol], dim=1)
        if self.recurrent is not None:
            r = self.config.recurrent_window
            idle = ((values == 0) & (mask > 0)).to(values.dtype)
            seq = torch.stack([z[:, -r:], mask[:, -r:], idle[:, -r:]], dim=2)
            _, state = self.recurrent(seq)  # state: (1, batch, recurrent_size)
            summary = torch.cat([summary, state[-1]], dim=1)
        x = torch.cat(
            [values, z, mask, seasonal, z_lag, seasonal_mask, series_features, summary], dim=1
        )
        hidden = act(self.encoder_in(x))
        hidden = hidden + act(self.encoder_hidden(self.dropout(hidden)))
        step = self.to_step(self.dropout(hidden))  # (batch, E)
        batch = step.shape[0]
        pos = self.position.weight[:horizon].unsqueeze(0).expand(batch, -1, -1)
        parts = [step.unsqueeze(1).expand(-1, horizon, -1), pos, step_calendar]
        if w:
            # Yesterday at each forecast step's time of day.
            at = slice(w // 2, w // 2 + horizon)
            lag = [seasonal[:, at], z_lag[:, at], seasonal_mask[:, at]]
            parts.append(torch.stack(lag, dim=2))
        dec_in = torch.cat(parts, dim=2)
        out = self.decoder_out(act(self.decoder_in(dec_in)))  # (batch, horizon, N_HEADS + rank)

        skip = self.linear_skip(torch.cat([z, z_lag], dim=1))[:, :horizon]
        loc = level.unsqueeze(1) + vol * (skip + out[..., 0]) + 0.1 * out[..., 3]
        # Spread relative to the context's own recent volatility (a calm series starts
        # calm) plus an absolute part for what the context cannot show (session onsets).
        relative = vol * torch.exp(out[..., 1].clamp(-8.0, 4.0))
        sigma = self.config.min_sigma + relative + nn.functional.softplus(out[..., 2] - 4.0)
        rank = self.config.rank
        factors = 0.3 * vol.unsqueeze(2) * out[..., N_HEADS : N_HEADS + rank]
        if self.config.max_log_std > 0:
            std = torch.sqrt(sigma.square() + factors.square().sum(dim=-1))
            shrink = (self.config.max_log_std / std).clamp(max=1.0)
            sigma, factors = sigma * shrink, factors * shrink.unsqueeze(2)
        zero_prob = torch.sigmoid(out[..., -1]) if self.config.zero_inflated else None
        return HorizonDistribution(loc=loc, sigma=sigma, factors=factors, zero_prob=zero_prob)


def context_summary(values: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(batch,)`` level (mean of the last LEVEL_WINDOW observed log values) and
    volatility (their standard deviation over the last VOLATILITY_WINDOW, floored at 1e-3)."""
    recent_v, recent_m = values[:, -LEVEL_WINDOW:], mask[:, -LEVEL_WINDOW:]
    level = (recent_v * recent_m).sum(1) / recent_m.sum(1).clamp(min=1.0)
    wide_v, wide_m = values[:, -VOLATILITY_WINDOW:], mask[:, -VOLATILITY_WINDOW:]
    n = wide_m.sum(1).clamp(min=1.0)
    mean = (wide_v * wide_m).sum(1) / n
    var = ((wide_v - mean.unsqueeze(1)).square() * wide_m).sum(1) / n
    return level, torch.sqrt(var + 1e-6).clamp(min=1e-3)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
