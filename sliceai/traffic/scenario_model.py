"""Scenario settings: which slices a synthetic scenario has and how each one behaves.

A scenario YAML file (bundled ones live in ``sliceai/data/scenarios/``, with
copies in ``sims/scenarios/``) lists slices; each slice is the sum of
components, each a vectorised stochastic process (see
:mod:`sliceai.traffic.generators`):

``level``     a base rate shaped by day/week profiles (diurnal eMBB);
``sessions``  sessions arriving as a Poisson process whose intensity follows
              the profiles, each with its own rate and lognormal duration
              (tele-surgery, consults, flash crowds, alarm storms, firmware bulk);
``periodic``  many devices sending fixed-size messages periodically, their
              number changing in regimes (vitals monitors, sensor heartbeats);
``cyclic``    cyclic control traffic at a level redrawn every shift while the
              schedule says the plant runs.

Every component may add multiplicative lognormal noise (``noise``, fast;
``drift``, slow), Pareto spikes while active (``spikes``), a per-direction
``split`` and a day/week calendar (``day``: 24 hourly factors, ``week``: 7
daily factors Monday first, ``when``: days and hour windows). Rates are written
with units (``"20 Mbps"``), durations too (``"15 min"``). A scenario may take
slices from other bundled scenarios (``include``).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from sliceai.policy.units import parse_duration_s, parse_rate

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _rate(value: object) -> float:
    return parse_rate(value)


def _duration(value: object) -> float:
    return parse_duration_s(value)


RateBps = Annotated[float, BeforeValidator(_rate), Field(ge=0)]
DurationS = Annotated[float, BeforeValidator(_duration), Field(gt=0)]


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Noise(_Settings):
    """Multiplicative lognormal AR(1) noise with mean 1: ``sigma`` of the log, correlation time."""

    sigma: float = Field(ge=0, le=3)
    corr: DurationS = 1.0


class Spikes(_Settings):
    """Short additive bursts while the component is active: Pareto sizes (bit/s)."""

    per_hour: float = Field(gt=0)
    scale: RateBps
    shape: float = Field(default=1.5, gt=0.5)
    length: DurationS = 1.0
    max: RateBps | None = None


class Split(_Settings):
    """Factor per direction applied to the component's rate."""

    dl: float = Field(default=1.0, ge=0)
    ul: float = Field(default=1.0, ge=0)


class When(_Settings):
    """Weekly schedule: ``days`` (mon..sun), ``hours`` windows ``[start, end)``, end may be > 24."""

    days: tuple[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"], ...] = WEEKDAYS  # type: ignore[assignment]
    hours: tuple[tuple[float, float], ...] = ((0.0, 24.0),)

    @field_validator("hours")
    @classmethod
    def _windows(cls, hours: tuple[tuple[float, float], ...]) -> tuple[tuple[float, float], ...]:
        for start, end in hours:
            if not (0 <= start < 24 and start < end <= start + 24):
                raise ValueError(
                    f"hour window [{start}, {end}] must have 0 <= start < 24, start < end"
                )
        return hours


class LogNormalSetting(_Settings):
    """A lognormal quantity given by its median and the sigma of its log, optionally capped."""

    median: float
    sigma: float = Field(default=0.0, ge=0, le=4)
    max: float | None = None


class RateDist(LogNormalSetting):
    median: RateBps
    max: RateBps | None = None


class DurationDist(LogNormalSetting):
    median: DurationS
    max: DurationS | None = None


class _Component(_Settings):
    stream: str | None = Field(
        default=None,
        description="random stream name: components with the same stream and timing settings "
        "get the same session times (the haptics and video of one surgery)",
    )
    split: Split = Split()
    noise: Noise | None = None
    drift: Noise | None = None
    spikes: Spikes | None = None
    day: tuple[float, ...] | None = Field(default=None, min_length=24, max_length=24)
    week: tuple[float, ...] | None = Field(default=None, min_length=7, max_length=7)
    when: When | None = None


class Level(_Component):
    kind: Literal["level"]
    rate: RateBps


class Sessions(_Component):
    kind: Literal["sessions"]
    per_hour: float = Field(gt=0, description="session starts per hour where the profile is 1")
    duration: DurationDist
    rate: RateDist
    exclusive: bool = Field(default=False, description="at most one session at a time")


class Periodic(_Component):
    kind: Literal["periodic"]
    devices: int = Field(ge=1)
    message_bytes: float = Field(gt=0)
    period: DurationS
    regimes_per_day: float = Field(default=0.0, ge=0)
    regime_sigma: float = Field(default=0.0, ge=0, le=2)


class Cyclic(_Component):
    kind: Literal["cyclic"]
    low: RateBps
    high: RateBps
    shift: DurationS = 8 * 3600.0
    idle: RateBps = 0.0


Component = Annotated[Level | Sessions | Periodic | Cyclic, Field(discriminator="kind")]


class SliceSettings(_Settings):
    name: Annotated[str, Field(pattern=r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")]
    description: str = ""
    cap: RateBps | None = None
    components: tuple[Component, ...] = Field(min_length=1)


class Include(_Settings):
    scenario: str
    slices: tuple[str, ...] = Field(min_length=1)


class Scenario(_Settings):
    name: str
    description: str = ""
    utc_offset_h: float = Field(default=0.0, ge=-14, le=14)
    include: tuple[Include, ...] = ()
    slices: tuple[SliceSettings, ...] = ()
