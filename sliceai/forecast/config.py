"""Hyper-parameters of the forecast model, stored next to the weights as JSON."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Any

from sliceai.forecast.errors import ForecastError

FORMAT_VERSION = 1
SECONDS_PER_DAY = 86400.0
#: Fields of variants that were never shipped and are no longer built, with the value that
#: left them off: a checkpoint written before their removal still loads where it holds
#: that value (the key is dropped), and is refused where it holds another.
OBSOLETE_FIELDS: dict[str, Any] = {"session_summary": False}


def day_period(interval_s: float) -> int:
    """One day in intervals of ``interval_s`` seconds (at least 1)."""
    return max(1, round(SECONDS_PER_DAY / interval_s))


@dataclass(frozen=True)
class ForecastConfig:
    """Shape of a :class:`~sliceai.forecast.model.ForecastModel`.

    ``context_length`` intervals of history go in (shorter histories are left-padded
    and masked, longer ones cropped to the most recent); up to ``max_horizon`` steps
    come out in one forward pass (longer horizons are generated block by block).
    ``rank`` is the number of latent factors of the Gaussian copula over the horizon;
    ``min_sigma`` floors the per-step standard deviation in the model's log space.
    ``tail_linear`` and ``tail_cubic`` reshape each step's marginal after training: a
    standard deviate ``z`` becomes ``tail_linear * z + tail_cubic * z**3`` (a sharper
    body and heavier tails than the Gaussian; fitted on validation data by
    :func:`sliceai.forecast.training.calibration.fit_tail_shape`: the lowest CRPS among the
    shapes whose
    95% interval covers about 95%; 1 and 0 leave the Gaussian as is).
    ``seasonal_window`` intervals of history one day earlier, centred on the forecast
    origin, go in as well when the history reaches that far back (the same time of day
    yesterday: scheduled sessions and the daily profile); 0 leaves them out.
    ``seasonal_min_interval_s``: clocks faster than this get no seasonal input, in
    training and forecasting alike (the window is left unobserved): at short intervals
    yesterday's ``seasonal_window`` is a few minutes of other sessions, and reaching it
    takes a day of history per forecast (8,640 intervals at 10 s); 0 (the default, and
    what older configs read as) gives it at every clock.
    ``zero_inflated`` adds a per-step probability that the slice is idle (exactly 0):
    a session that may end or start within the horizon is two lumps, not one.
    ``members`` > 1 makes the checkpoint a seed ensemble: that many networks of this shape,
    read as one equal-weight mixture (:mod:`sliceai.forecast.mixture`; the tail shape is
    the mixture's).
    ``max_log_std`` bounds each step's marginal standard deviation in log space: above it,
    the idiosyncratic spread and the factors are scaled down together (the correlations
    stay); 0 (the default, and what older configs read as) leaves it unbounded. An idle
    context's Gaussian part (drawn with probability ``1 - zero_prob``) may otherwise span
    many orders of magnitude, and a context unlike the training data can get such a
    spread with a real chance of being drawn.
    ``fast_below_s``: clocks faster than this are forecast by a second checkpoint, stored
    in the ``fast/`` subdirectory of this one (networks trained at those clocks, see
    :class:`~sliceai.forecast.pipeline.ForecastPipeline`); 0 (the default, and what older
    configs read as): this checkpoint forecasts at every clock.
    ``recurrent_window`` > 0 runs a GRU of ``recurrent_size`` units over the last that many
    context points (each standardised by the context's level and volatility, observed or
    not, idle or not) and gives the encoder its last state: a running summary of recent
    steps, calls starting and ending, that a linear layer over the raw points reads
    poorly; 0 (the default, and what older configs read as) leaves it out.
    """

    context_length: int = 256
    max_horizon: int = 32
    hidden_size: int = 128
    step_embed_size: int = 32
    decoder_hidden_size: int = 64
    rank: int = 8
    dropout: float = 0.05
    min_sigma: float = 0.002
    tail_linear: float = 1.0
    tail_cubic: float = 0.0
    seasonal_window: int = 0
    seasonal_min_interval_s: float = 0.0
    zero_inflated: bool = False
    members: int = 1
    max_log_std: float = 0.0
    fast_below_s: float = 0.0
    recurrent_window: int = 0
    recurrent_size: int = 32

    def __post_init__(self) -> None:
        for name in (
            "context_length",
            "max_horizon",
            "hidden_size",
            "step_embed_size",
            "decoder_hidden_size",
            "rank",
            "members",
            "recurrent_size",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ForecastError(
                    f"config field {name!r} must be a positive integer, got {value!r}"
                )
        if (
            not isinstance(self.seasonal_window, int)
            or isinstance(self.seasonal_window, bool)
            or self.seasonal_window < 0
            or self.seasonal_window % 2
            or 0 < self.seasonal_window < 2 * self.max_horizon
        ):
            raise ForecastError(
                "config field 'seasonal_window' must be 0 or an even integer >= 2 x "
                f"max_horizon, got {self.seasonal_window!r}"
            )
        window = self.recurrent_window
        if not isinstance(window, int) or isinstance(window, bool) or window < 0:
            raise ForecastError(
                f"config field 'recurrent_window' must be an integer >= 0, got {window!r}"
            )
        if not isinstance(self.zero_inflated, bool):
            raise ForecastError(
                f"config field 'zero_inflated' must be true or false, got {self.zero_inflated!r}"
            )
        for name in ("seasonal_min_interval_s", "max_log_std", "fast_below_s"):  # 0: off
            value = getattr(self, name)
            if (
                not isinstance(value, (int, float))
                or isinstance(value, bool)
                or not 0.0 <= value < float("inf")
            ):
                raise ForecastError(
                    f"config field {name!r} must be a finite number >= 0, got {value!r}"
                )
        if not 0.0 <= self.dropout < 1.0:
            raise ForecastError(f"config field 'dropout' must be in [0, 1), got {self.dropout!r}")
        if not (self.tail_linear > 0.0 and self.tail_cubic >= 0.0):
            raise ForecastError(
                f"config fields 'tail_linear' > 0 and 'tail_cubic' >= 0 required, got "
                f"{self.tail_linear!r}, {self.tail_cubic!r}"
            )
        if not 0.0 < self.min_sigma < 1.0:
            raise ForecastError(
                f"config field 'min_sigma' must be in (0, 1), got {self.min_sigma!r}"
            )

    def seasonal_at(self, interval_s: float) -> bool:
        """Whether the model reads yesterday's window at ``interval_s``."""
        return self.seasonal_window > 0 and interval_s >= self.seasonal_min_interval_s

    def history_length(self, interval_s: float) -> int:
        """Intervals of history the model reads at ``interval_s``: the context, and with a
        seasonal window (:meth:`seasonal_at`) back to one day plus half that window before
        the origin."""
        if not self.seasonal_at(interval_s):
            return self.context_length
        return max(self.context_length, day_period(interval_s) + self.seasonal_window // 2)

    def to_json(self, **extra: Any) -> str:
        """JSON text with the fields, the format version and any ``extra`` metadata."""
        return json.dumps({"format_version": FORMAT_VERSION, **asdict(self), **extra}, indent=2)

    @classmethod
    def from_json(cls, text: str, source: str = "config") -> ForecastConfig:
        """Parse :meth:`to_json` output; keys that are not fields are metadata (ignored
        here), and :data:`OBSOLETE_FIELDS` load only with the value that left them off."""
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ForecastError(f"{source}: not valid JSON ({exc})") from None
        if not isinstance(raw, dict):
            raise ForecastError(f"{source}: expected a JSON object")
        version = raw.get("format_version")
        if version != FORMAT_VERSION:
            raise ForecastError(
                f"{source}: format_version {version!r}, this sliceai reads {FORMAT_VERSION}"
            )
        for key, off in OBSOLETE_FIELDS.items():
            if key in raw and raw[key] != off:
                raise ForecastError(
                    f"{source}: {key!r} is {raw[key]!r}: a variant this sliceai no longer "
                    f"builds (only {json.dumps(off)} loads)"
                )
        names = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in raw.items() if k in names}
        try:
            return cls(**kwargs)
        except TypeError as exc:
            raise ForecastError(f"{source}: {exc}") from None
