"""A plan as 3GPP TS 28.541 ``RRMPolicyRatio`` objects, for RANs that take slice shares.

One object per slice that crosses the cell's link, its member the slice's S-NSSAI in
one PLMN; ratios are integer percent of the cell's capacity, read as shares of its PRBs
(the RAN turns them into PRBs; the same spectral efficiency is assumed for every slice):

- ``rRMPolicyDedicatedRatio``: the slice's guaranteed rate (its floor, reserved even when
  unused), rounded up;
- ``rRMPolicyMinRatio``: the planned rate (the plan's allocation, which is at least the
  floor where capacity allows), rounded up, at least the dedicated ratio;
- ``rRMPolicyMaxRatio``: the slice's maximum rate, rounded up (100 when it has none), at
  least the min ratio.

Rounding up never cuts a planned rate, but can push the sum of the min ratios over
100; then the least important slices (highest priority number, then the later in the
policy) give up points first: their rounding, then min ratio down to dedicated, then
dedicated too, until the sum is 100. Invariants: integers, ``0 <= dedicated <= min <= max <= 100``,
``sum(min) <= 100`` (so ``sum(dedicated) <= 100``).

``resource``: ``"PRB"`` (DL figures; what most RANs take), ``"PRB_DL"`` or ``"PRB_UL"``
(TS 28.541 Rel-17 resource types, one direction each).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import numpy.typing as npt

from sliceai.policy.model import DIRECTIONS, Direction, Policy

RESOURCE_DIRECTION: dict[str, Direction] = {
    "PRB": Direction.DL,
    "PRB_DL": Direction.DL,
    "PRB_UL": Direction.UL,
}
DEFAULT_PLMN = ("001", "01")


def _percent(bps: float, capacity: float) -> int:
    if not math.isfinite(bps):
        return 100
    share = 100.0 * max(bps, 0.0) / capacity
    # 1e-9: a share that is an integer up to float noise is not rounded up past it
    return min(100, math.ceil(share - 1e-9))


def rrm_ratios(
    guaranteed_bps: npt.ArrayLike,
    planned_bps: npt.ArrayLike,
    maximum_bps: npt.ArrayLike,
    capacity_bps: float,
    priority: npt.ArrayLike,
) -> list[tuple[int, int, int]]:
    """``(dedicated, min, max)`` percent per slice (see the module docstring); ``priority``:
    lower is more important (3GPP), ties broken by position (earlier kept first)."""
    if not (math.isfinite(capacity_bps) and capacity_bps > 0):
        raise ValueError(f"capacity {capacity_bps!r} bit/s: must be finite and > 0")
    g = np.asarray(guaranteed_bps, dtype=np.float64)
    p = np.asarray(planned_bps, dtype=np.float64)
    m = np.asarray(maximum_bps, dtype=np.float64)
    prio = np.asarray(priority)
    if not (g.shape == p.shape == m.shape == prio.shape) or g.ndim != 1:
        raise ValueError("one value per slice in each of guaranteed, planned, maximum, priority")
    if np.isnan(g).any() or np.isnan(p).any() or np.isnan(m).any():
        raise ValueError("rates must not be NaN")
    ded = [_percent(x, capacity_bps) for x in g]
    mins = [max(d, _percent(x, capacity_bps)) for d, x in zip(ded, p, strict=True)]
    rounded_down = [
        max(d, math.floor(min(100.0, 100.0 * max(x, 0.0) / capacity_bps) + 1e-9))
        for d, x in zip(ded, p, strict=True)
    ]
    over = sum(mins) - 100
    # least important first: highest priority number, then the later slice
    order = sorted(range(len(mins)), key=lambda i: (-int(prio[i]), -i))
    for lower in (rounded_down, ded):  # the rounding first, then planned down to the floor
        for i in order:
            if over <= 0:
                break
            give = min(over, mins[i] - lower[i])
            mins[i] -= give
            over -= give
    for i in order:  # then floors, where even they sum over 100 after rounding
        if over <= 0:
            break
        give = min(over, mins[i])
        mins[i] -= give
        ded[i] = min(ded[i], mins[i])
        over -= give
    maxes = [max(mn, _percent(x, capacity_bps)) for mn, x in zip(mins, m, strict=True)]
    return list(zip(ded, mins, maxes, strict=True))


def rrm_policy_ratios(
    policy: Policy,
    rates_bps: npt.ArrayLike,
    *,
    link: str | None = None,
    capacity_bps: float | None = None,
    resource: str = "PRB",
    plmn: tuple[str, str] = DEFAULT_PLMN,
    slices: Iterable[str] | None = None,
) -> list[dict[str, Any]]:
    """``RRMPolicyRatio`` objects (``{"id": slice, "attributes": {...}}``) for a plan.

    ``rates_bps``: the plan's ``(n_slices, 2)`` bit/s in policy order. ``link``: the
    cell's link (default the topology's first); only the slices crossing it are listed
    (and of those only ``slices`` when given). ``capacity_bps``: the cell's capacity
    (default the link's). Pure: no I/O.
    """
    try:
        direction = RESOURCE_DIRECTION[resource]
    except KeyError:
        raise ValueError(
            f"resource type {resource!r}: use one of {', '.join(RESOURCE_DIRECTION)}"
        ) from None
    cell = policy.topology.links[0] if link is None else policy.link(link)
    capacity = cell.capacity if capacity_bps is None else float(capacity_bps)
    rates = np.asarray(rates_bps, dtype=np.float64)
    if rates.shape != (len(policy.slices), len(DIRECTIONS)):
        raise ValueError(f"rates: shape {rates.shape}, expected ({len(policy.slices)}, 2)")
    wanted = None if slices is None else set(slices)
    members = [n for n in cell.slices if wanted is None or n in wanted]
    chosen = [policy.slice(n) for n in members]
    d = DIRECTIONS.index(direction)
    ratios = rrm_ratios(
        [s.guaranteed_bps(direction) for s in chosen],
        [rates[policy.slice_index(s.name), d] for s in chosen],
        [s.maximum_bps(direction) for s in chosen],
        capacity,
        [s.priority_level for s in chosen],
    )
    mcc, mnc = plmn
    out = []
    for s, (ded, mn, mx) in zip(chosen, ratios, strict=True):
        snssai: dict[str, Any] = {"sst": s.snssai.sst}
        if s.snssai.sd is not None:
            snssai["sd"] = s.snssai.sd
        out.append(
            {
                "id": s.name,
                "attributes": {
                    "resourceType": resource,
                    "rRMPolicyMemberList": [{"plmnId": {"mcc": mcc, "mnc": mnc}, "sNSSAI": snssai}],
                    "rRMPolicyMinRatio": mn,
                    "rRMPolicyMaxRatio": mx,
                    "rRMPolicyDedicatedRatio": ded,
                },
            }
        )
    return out
