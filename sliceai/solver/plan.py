"""The allocation plan: a rate per slice and direction, and why.

A slice gets the same rate on every link it crosses (its meter), so the plan
is ``rates_bps`` ``(n_slices, 2)`` (index 0 DL, 1 UL) plus the arrays the
explanations are computed from. Explanations are built on first access, so
solving stays fast when nobody reads them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from sliceai.policy import DIRECTIONS, Direction
from sliceai.policy.units import format_rate
from sliceai.solver.demand import DemandForecast, SolverError
from sliceai.solver.problem import PolicyArrays

if TYPE_CHECKING:
    from sliceai.policy import Policy

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

#: Relative tolerance when deciding that a rate sits on a bound or a link is full.
BOUND_TOLERANCE = 1e-6


@dataclass(frozen=True)
class DirectionExplanation:
    """Why one slice got its rate in one direction (all rates in bit/s).

    ``target_bps``: what the slice is protected to: its floor (guaranteed quota
    plus admitted grants) and, for a guaranteed slice, the ``1 - risk`` demand
    quantile, capped at its maximum. ``kept``: the rate covers the target
    (None when the target is 0). ``short_bps``: how much it falls short.
    ``expected_shortfall_bps``: ``E[(D - rate)+]`` under the forecast.
    ``change_bps``: rate minus the previous plan's (None without one).
    ``binding``: what holds the rate where it is: ``"cap"``, ``"floor"``,
    ``"link:<name>"`` (a full link the slice crosses while it wants more).
    """

    direction: Direction
    rate_bps: float
    target_bps: float
    kept: bool | None
    short_bps: float
    expected_shortfall_bps: float
    change_bps: float | None
    binding: tuple[str, ...]

    def __str__(self) -> str:
        parts = [f"{self.direction.value} {format_rate(self.rate_bps)}"]
        if self.kept is not None:
            parts.append(
                f"guarantee {format_rate(self.target_bps)} "
                + ("kept" if self.kept else f"NOT kept, short {format_rate(self.short_bps)}")
            )
        parts.append(f"expected shortfall {format_rate(self.expected_shortfall_bps)}")
        if self.change_bps is not None:
            parts.append(
                f"change {'+' if self.change_bps >= 0 else '-'}{format_rate(abs(self.change_bps))}"
            )
        if self.binding:
            parts.append("held by " + ", ".join(self.binding))
        return "; ".join(parts)


@dataclass(frozen=True)
class SliceExplanation:
    slice: str
    dl: DirectionExplanation
    ul: DirectionExplanation

    @property
    def guarantee_kept(self) -> bool:
        """True unless some direction's target is missed."""
        return self.dl.kept is not False and self.ul.kept is not False

    def __str__(self) -> str:
        return f"{self.slice}: {self.dl} | {self.ul}"


@dataclass(frozen=True, eq=False)
class Plan:
    """Rates per slice and direction for one interval.

    Arrays (bit/s unless said): ``rates_bps``, ``floor_bps``, ``target_bps``,
    ``cap_bps`` (inf = none), ``desire_bps`` (the rate wanted with unlimited
    capacity), ``reserved_bps`` (admitted grants): ``(n_slices, 2)``;
    ``incidence`` ``(n_links, n_slices)`` bool; ``capacity_bps`` ``(n_links,)``;
    ``previous_bps`` ``(n_slices, 2)`` or None. ``methods``: how each
    direction was solved ("unconstrained", "greedy", "highs", "fail-safe").
    """

    policy_name: str
    slice_names: tuple[str, ...]
    link_names: tuple[str, ...]
    rates_bps: FloatArray
    floor_bps: FloatArray
    target_bps: FloatArray
    cap_bps: FloatArray
    desire_bps: FloatArray
    reserved_bps: FloatArray
    incidence: BoolArray
    capacity_bps: FloatArray
    previous_bps: FloatArray | None = None
    demand: DemandForecast | None = field(default=None, repr=False)
    methods: tuple[str, str] = ("fail-safe", "fail-safe")

    def _index(self, slice_name: str) -> int:
        try:
            return self.slice_names.index(slice_name)
        except ValueError:
            raise SolverError(
                f"no slice {slice_name!r} in plan for policy {self.policy_name}"
            ) from None

    def rate(self, slice_name: str, direction: Direction) -> float:
        """Rate of one slice in one direction, bit/s."""
        return float(self.rates_bps[self._index(slice_name), DIRECTIONS.index(direction)])

    def link_allocation(self, link: str) -> dict[str, tuple[float, float]]:
        """``{slice: (dl, ul)}`` bit/s for the slices crossing ``link``."""
        try:
            li = self.link_names.index(link)
        except ValueError:
            raise SolverError(f"no link {link!r} in policy {self.policy_name}") from None
        idx = np.flatnonzero(self.incidence[li])
        return {
            self.slice_names[i]: (float(self.rates_bps[i, 0]), float(self.rates_bps[i, 1]))
            for i in idx
        }

    def link_load_bps(self) -> FloatArray:
        """Allocated rate per link and direction, ``(n_links, 2)`` bit/s."""
        return np.asarray(self.incidence.astype(np.float64) @ self.rates_bps)

    @cached_property
    def explanations(self) -> dict[str, SliceExplanation]:
        """Per slice, in policy order; computed on first access."""
        rates = self.rates_bps
        tol = BOUND_TOLERANCE * np.maximum(1.0, self.capacity_bps.max())
        kept = rates >= self.target_bps - tol
        short = np.maximum(self.target_bps - rates, 0.0)
        if self.demand is not None:
            shortfall = self.demand.expected_shortfall(rates)
        else:
            shortfall = np.full(rates.shape, np.nan)
        full = self.link_load_bps() >= self.capacity_bps[:, None] * (1 - BOUND_TOLERANCE)
        wants_more = rates < self.desire_bps - tol
        at_cap = np.isfinite(self.cap_bps) & (rates >= self.cap_bps - tol)
        at_floor = (self.floor_bps > 0) & (np.abs(rates - self.floor_bps) <= tol)
        out: dict[str, SliceExplanation] = {}
        for i, name in enumerate(self.slice_names):
            per_dir = []
            for d, direction in enumerate(DIRECTIONS):
                binding: list[str] = []
                if at_cap[i, d]:
                    binding.append("cap")
                if at_floor[i, d]:
                    binding.append("floor")
                if wants_more[i, d]:
                    links = np.flatnonzero(self.incidence[:, i] & full[:, d])
                    binding.extend(f"link:{self.link_names[li]}" for li in links)
                per_dir.append(
                    DirectionExplanation(
                        direction=direction,
                        rate_bps=float(rates[i, d]),
                        target_bps=float(self.target_bps[i, d]),
                        kept=None if self.target_bps[i, d] <= 0 else bool(kept[i, d]),
                        short_bps=float(short[i, d]) if not kept[i, d] else 0.0,
                        expected_shortfall_bps=float(shortfall[i, d]),
                        change_bps=None
                        if self.previous_bps is None
                        else float(rates[i, d] - self.previous_bps[i, d]),
                        binding=tuple(binding),
                    )
                )
            out[name] = SliceExplanation(name, per_dir[0], per_dir[1])
        return out

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"policy", "methods", "slices": {name: {"dl", "ul", "kept"}}}``, bit/s."""
        return {
            "policy": self.policy_name,
            "methods": list(self.methods),
            "slices": {
                name: {
                    "dl": float(self.rates_bps[i, 0]),
                    "ul": float(self.rates_bps[i, 1]),
                    "kept": self.explanations[name].guarantee_kept,
                }
                for i, name in enumerate(self.slice_names)
            },
        }

    def unkept(self) -> list[SliceExplanation]:
        """Explanations of the slices whose guarantee is not kept, most important first."""
        return [e for e in self.explanations.values() if not e.guarantee_kept]

    @classmethod
    def guarantees_only(cls, policy: Policy, reserved_bps: FloatArray | None = None) -> Plan:
        """The fail-safe plan: every slice at its floor (guaranteed quota plus grants).

        Floors over a link's capacity (possible only with grants or a policy
        built without the loader's checks) are scaled down on that link.
        """
        arrays = PolicyArrays.of(policy)
        reserved = arrays.check_reserved(reserved_bps)
        floor = np.minimum(arrays.floor_bps + reserved, arrays.cap_bps)
        rates = fit_capacity(floor, arrays.incidence, arrays.capacity_bps)
        return cls(
            policy_name=policy.name,
            slice_names=policy.slice_names,
            link_names=policy.link_names,
            rates_bps=rates,
            floor_bps=floor,
            target_bps=floor,
            cap_bps=arrays.cap_bps,
            desire_bps=floor,
            reserved_bps=reserved,
            incidence=arrays.incidence,
            capacity_bps=arrays.capacity_bps,
        )


def fit_capacity(
    rates: FloatArray,
    incidence: BoolArray,
    capacity: FloatArray,
    floor: FloatArray | None = None,
) -> FloatArray:
    """Rates ``(..., n_slices, 2)`` bit/s scaled down so no link exceeds its capacity.

    On a link over its capacity, every member's rate above its ``floor`` (``(n_slices,
    2)``, default 0) shrinks by the same factor, so floors are kept whenever they fit; a
    slice on several links takes the smallest factor of its links. Where the floors
    alone exceed a link, its members are scaled down whole. One pass brings every link
    within capacity (to a relative 1e-12).
    """
    x = np.asarray(rates, dtype=np.float64)
    base = np.zeros(x.shape[-2:]) if floor is None else np.minimum(floor, x)
    inc = incidence.astype(np.float64)  # (L, S)
    cap = capacity[:, None]
    above = x - base
    base_load = np.einsum("ls,...sd->...ld", inc, base)
    extra = np.einsum("ls,...sd->...ld", inc, above)
    room = np.maximum(cap - base_load, 0.0)
    over_floors = base_load > cap
    margin = 1 - 1e-12  # sums in another order may round up by an ulp: stay that far below
    with np.errstate(divide="ignore", invalid="ignore"):
        keep = np.where(extra > room * margin, np.minimum(room / extra * margin, 1.0), 1.0)
        whole = np.where(over_floors, cap / base_load * margin, 1.0)
    member = incidence[:, :, None]  # (L, S, 1)
    k_above = np.where(member, keep[..., :, None, :], 1.0).min(axis=-3)
    k_whole = np.where(member, whole[..., :, None, :], 1.0).min(axis=-3)
    out: FloatArray = (base + above * k_above) * k_whole
    return out
