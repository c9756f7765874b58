"""The forecast network: an MLP encoder over the context and a per-step decoder.

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
POSITION_EMBED_SIZE = 8


@dataclass(frozen=True)
class HorizonDistribution:
    """Joint Gaussian over ``horizon`` steps in log space.

    ``loc``: ``(batch, horizon)``; ``sigma``: ``(batch, horizon)`` per-step
    idiosyncratic standard deviation; ``factors``: ``(batch, horizon, rank)``.
    Covariance = ``factors @ factors.T + diag(sigma**2)``.
    """

    loc: torch.Tensor
    sigma: torch.Tensor
    factors: torch.Tensor

    def marginal_std(self) -> torch.Tensor:
        """``(batch, horizon)`` standard deviation of each step."""
        return torch.sqrt(self.sigma.square() + self.factors.square().sum(dim=-1))

    def log_prob(self, y: torch.Tensor) -> torch.Tensor:
        """``(batch,)`` log density of targets ``y`` ``(batch, horizon)``."""
        dist = torch.distributions.LowRankMultivariateNormal(
            self.loc, self.factors, self.sigma.square(), validate_args=False
        )
        out: torch.Tensor = dist.log_prob(y)  # type: ignore[no-untyped-call]
        return out

    def sample(self, n_samples: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``(batch, n_samples, horizon)`` joint draws in log space."""
        batch, horizon, rank = self.factors.shape
        dev, dtype = self.loc.device, self.loc.dtype
        eps = torch.randn(batch, n_samples, horizon, generator=generator, device=dev, dtype=dtype)
        z = torch.randn(batch, n_samples, rank, generator=generator, device=dev, dtype=dtype)
        common = torch.bmm(z, self.factors.transpose(1, 2))
        paths: torch.Tensor = self.loc.unsqueeze(1) + self.sigma.unsqueeze(1) * eps + common
        return paths


class ForecastModel(nn.Module):
    """Context ``(batch, context_length)`` in, :class:`HorizonDistribution` out."""

    def __init__(self, config: ForecastConfig) -> None:
        super().__init__()
        self.config = config
        c, h = config.context_length, config.hidden_size
        self.encoder_in = nn.Linear(2 * c + N_SERIES_FEATURES, h)
        self.encoder_hidden = nn.Linear(h, h)
        self.dropout = nn.Dropout(config.dropout)
        self.to_step = nn.Linear(h, config.step_embed_size)
        self.position = nn.Embedding(config.max_horizon, POSITION_EMBED_SIZE)
        self.decoder_in = nn.Linear(
            config.step_embed_size + POSITION_EMBED_SIZE + N_CALENDAR, config.decoder_hidden_size
        )
        self.decoder_out = nn.Linear(config.decoder_hidden_size, 2 + config.rank)
        self.linear_skip = nn.Linear(c, config.max_horizon)
        nn.init.zeros_(self.linear_skip.weight)
        nn.init.zeros_(self.linear_skip.bias)

    def forward(
        self,
        values: torch.Tensor,
        mask: torch.Tensor,
        series_features: torch.Tensor,
        step_calendar: torch.Tensor,
    ) -> HorizonDistribution:
        """Shapes: ``values``, ``mask`` ``(batch, context_length)``; ``series_features``
        ``(batch, N_SERIES_FEATURES)``; ``step_calendar`` ``(batch, horizon, N_CALENDAR)``
        with ``horizon <= max_horizon``."""
        horizon = step_calendar.shape[1]
        act = nn.functional.gelu
        x = torch.cat([values, mask, series_features], dim=1)
        hidden = act(self.encoder_in(x))
        hidden = hidden + act(self.encoder_hidden(self.dropout(hidden)))
        step = self.to_step(self.dropout(hidden))  # (batch, E)
        batch = step.shape[0]
        pos = self.position.weight[:horizon].unsqueeze(0).expand(batch, -1, -1)
        dec_in = torch.cat([step.unsqueeze(1).expand(-1, horizon, -1), pos, step_calendar], dim=2)
        out = self.decoder_out(act(self.decoder_in(dec_in)))  # (batch, horizon, 2 + rank)

        recent_v = values[:, -LEVEL_WINDOW:]
        recent_m = mask[:, -LEVEL_WINDOW:]
        level = (recent_v * recent_m).sum(1) / recent_m.sum(1).clamp(min=1.0)
        skip = self.linear_skip(values)[:, :horizon]
        loc = level.unsqueeze(1) + skip + out[..., 0]
        sigma = self.config.min_sigma + nn.functional.softplus(out[..., 1] - 2.0)
        factors = 0.3 * out[..., 2:]
        return HorizonDistribution(loc=loc, sigma=sigma, factors=factors)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
