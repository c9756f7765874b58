"""Conversions between sliceai.v1 messages and the engine's own types."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from sliceai.engine import (
    BwRequest,
    ForecastResult,
    Grant,
    InvalidInput,
    NotFound,
    PlanRecord,
    PolicyRecord,
    SessionFilter,
)
from sliceai.engine.core import KPM_NAMES
from sliceai.engine.grants import guarantees_bps
from sliceai.policy import Policy
from sliceai.policy.snssai import parse_snssai_label
from sliceai.solver.rrm import rrm_policy_ratios
from sliceai.v1 import admin_pb2, common_pb2, controller_pb2, mec_pb2

MODE_TO_PROTO = {
    "optimized": common_pb2.PLAN_MODE_OPTIMIZED,
    "model-fallback": common_pb2.PLAN_MODE_MODEL_FALLBACK,
    "last-plan": common_pb2.PLAN_MODE_LAST_PLAN,
    "guarantees-only": common_pb2.PLAN_MODE_GUARANTEES_ONLY,
}
REQUEST_TYPE_FROM_PROTO = {
    mec_pb2.REQUEST_TYPE_APPLICATION_SPECIFIC: "application",
    mec_pb2.REQUEST_TYPE_SESSION_SPECIFIC: "session",
}
REQUEST_TYPE_TO_PROTO = {v: k for k, v in REQUEST_TYPE_FROM_PROTO.items()}
DIRECTION_FROM_PROTO = {
    mec_pb2.ALLOCATION_DIRECTION_DOWNLINK: "dl",
    mec_pb2.ALLOCATION_DIRECTION_UPLINK: "ul",
    mec_pb2.ALLOCATION_DIRECTION_BOTH: "both",
}
DIRECTION_TO_PROTO = {v: k for k, v in DIRECTION_FROM_PROTO.items()}
#: TS 28.552 per-slice sub-counters: ``DRB.UEThpDl.SNSSAI`` is ``DRB.UEThpDl`` of the
#: slice its S-NSSAI label names (E2SM-KPM label ``sliceID {sST, sD}``).
SNSSAI_SUFFIX = ".SNSSAI"


def kpm_records(records: Iterable[Any], policy: Policy) -> list[tuple[str, str, float]]:
    """A KpmReport's records as the engine's ``(name, slice label, value)``.

    ``NAME.SNSSAI`` (``DRB.UEThpDl.SNSSAI``, ``DRB.UEThpUl.SNSSAI``, ``RRU.PrbUsedDl.SNSSAI``
    and the other names of :data:`KPM_NAMES` with the suffix) becomes ``NAME`` and its label
    must be an S-NSSAI (:func:`sliceai.policy.snssai.parse_snssai_label`), matched to the
    policy's slices by S-NSSAI only, never by name: InvalidInput for a label that is not one,
    NotFound for one no slice has. Other names pass unchanged (the engine checks them and
    every value, once, as for every telemetry path).
    """
    by_snssai: dict[str, str] | None = None
    out = []
    for r in records:
        name, label = r.name, r.slice
        if name.endswith(SNSSAI_SUFFIX) and name[: -len(SNSSAI_SUFFIX)] in KPM_NAMES:
            if by_snssai is None:
                by_snssai = {str(s.snssai): s.name for s in policy.slices}
            try:
                key = parse_snssai_label(label)
            except ValueError as exc:
                raise InvalidInput(f"{name}: {exc}") from None
            if key not in by_snssai:
                raise NotFound(f"{name}: no slice has S-NSSAI {key}")
            name, label = name[: -len(SNSSAI_SUFFIX)], by_snssai[key]
        out.append((name, label, r.value))
    return out


def plan_to_proto(
    plan: PlanRecord, slices: Iterable[str] | None = None, own_app: str | None = None
) -> common_pb2.Plan:
    """The plan as a message; ``slices`` limits the slices listed, ``own_app`` counts
    only that app's grants in ``granted_*`` (None: all grants)."""
    policy = plan.policy
    wanted = None if slices is None else set(slices)
    granted = plan.granted_bps
    if own_app is not None:
        granted = np.zeros_like(granted)
        for g in plan.grants:
            if g.app_ins_id == own_app and g.request.slice in policy.slice_names:
                dl, ul = g.request.rates_bps()
                i = policy.slice_index(g.request.slice)
                granted[i] += (dl, ul)
    floors = guarantees_bps(policy)
    msg = common_pb2.Plan(
        version=plan.version,
        policy_version=plan.policy_version,
        interval_start_unix_s=plan.interval_start,
        interval_s=plan.interval_s,
        computed_at_unix_s=plan.computed_at,
        mode=MODE_TO_PROTO[plan.mode],
        stale_sources=sorted(plan.stale_sources),
        explanation=plan.explanation,
        compute_ms=plan.compute_ms,
    )
    rates = plan.rates_bps.tolist()
    forecast = plan.forecast_bps.tolist()
    measured = plan.measured_bps.tolist()
    grants = granted.tolist()
    floor_list = floors.tolist()
    for i, s in enumerate(policy.slices):
        if wanted is not None and s.name not in wanted:
            continue
        msg.slices.append(
            common_pb2.SliceAllocation(
                slice=s.name,
                snssai=str(s.snssai),
                dl_bps=rates[i][0],
                ul_bps=rates[i][1],
                guaranteed_dl_bps=floor_list[i][0],
                guaranteed_ul_bps=floor_list[i][1],
                forecast_dl_bps=forecast[i][0],
                forecast_ul_bps=forecast[i][1],
                measured_dl_bps=measured[i][0],
                measured_ul_bps=measured[i][1],
                granted_dl_bps=grants[i][0],
                granted_ul_bps=grants[i][1],
                stale=bool(plan.stale_slices[i]),
                explanation=plan.explanations[i],
            )
        )
    for link in policy.topology.links:
        shares = [
            common_pb2.LinkShare(slice=name, dl_bps=rates[j][0], ul_bps=rates[j][1])
            for name in link.slices
            if wanted is None or name in wanted
            for j in (policy.slice_index(name),)
        ]
        if shares:
            msg.links.append(
                common_pb2.LinkAllocation(link=link.name, capacity_bps=link.capacity, shares=shares)
            )
    return msg


def policy_update(record: PolicyRecord) -> controller_pb2.ServerMessage:
    return controller_pb2.ServerMessage(
        policy=controller_pb2.PolicyUpdate(
            version=record.version, yaml=record.yaml, name=record.name
        )
    )


def policy_version(record: PolicyRecord, with_yaml: bool = True) -> admin_pb2.PolicyVersion:
    return admin_pb2.PolicyVersion(
        version=record.version,
        name=record.name,
        yaml=record.yaml if with_yaml else "",
        applied_unix_s=record.applied_unix_s,
        sha256=record.sha256,
        applied_by=record.applied_by,
    )


def bw_request(info: mec_pb2.BwInfo) -> BwRequest:
    """A BwInfo as an engine request; unknown enum values become "" (rejected by validation)."""
    return BwRequest(
        app_ins_id=info.app_ins_id,
        slice=info.slice,
        fixed_allocation_bps=int(info.fixed_allocation_bps),
        direction=DIRECTION_FROM_PROTO.get(info.allocation_direction, ""),
        request_type=REQUEST_TYPE_FROM_PROTO.get(info.request_type, ""),
        app_name=info.app_name,
        priority=int(info.fixed_bw_priority),
        session_filters=tuple(
            SessionFilter(
                f.source_ip, tuple(f.source_port), f.dst_address, tuple(f.dst_port), f.protocol
            )
            for f in info.session_filter
        ),
    )


def bw_info(req: BwRequest) -> mec_pb2.BwInfo:
    return mec_pb2.BwInfo(
        app_ins_id=req.app_ins_id,
        app_name=req.app_name,
        request_type=REQUEST_TYPE_TO_PROTO[req.request_type],
        slice=req.slice,
        fixed_allocation_bps=req.fixed_allocation_bps,
        allocation_direction=DIRECTION_TO_PROTO[req.direction],
        fixed_bw_priority=req.priority,
        session_filter=[
            mec_pb2.SessionFilter(
                source_ip=f.source_ip,
                source_port=f.source_ports,
                dst_address=f.dst_address,
                dst_port=f.dst_ports,
                protocol=f.protocol,
            )
            for f in req.session_filters
        ],
    )


def bw_allocation(grant: Grant) -> mec_pb2.BwAllocation:
    return mec_pb2.BwAllocation(
        allocation_id=grant.allocation_id,
        bw_info=bw_info(grant.request),
        created_unix_s=grant.created_unix_s,
        modified_unix_s=grant.modified_unix_s,
    )


def forecast_response(result: ForecastResult) -> mec_pb2.ForecastResponse:
    msg = mec_pb2.ForecastResponse(
        start_unix_s=result.start,
        interval_s=result.interval_s,
        horizon=int(result.values.shape[2]),
        levels=result.levels.tolist(),
        fallback=result.fallback,
    )
    for i, name in enumerate(result.slices):
        msg.slices.append(
            mec_pb2.SliceForecast(
                slice=name,
                dl_bps=result.values[i, 0].reshape(-1).tolist(),
                ul_bps=result.values[i, 1].reshape(-1).tolist(),
            )
        )
    return msg


def plan_rrm_policy(
    plan: common_pb2.Plan,
    policy: Policy,
    *,
    link: str | None = None,
    capacity_bps: float | None = None,
    resource: str = "PRB",
    plmn: tuple[str, str] = ("001", "01"),
) -> dict[str, Any]:
    """A received plan as TS 28.541 ``RRMPolicyRatio`` objects (:mod:`sliceai.solver.rrm`)
    with the plan's version and interval; only the slices the plan lists (and that ``policy``
    knows) are rendered."""
    rates = np.zeros((len(policy.slices), 2))
    listed = []
    for s in plan.slices:
        if s.slice in policy.slice_names:
            rates[policy.slice_index(s.slice)] = (s.dl_bps, s.ul_bps)
            listed.append(s.slice)
    ratios = rrm_policy_ratios(
        policy,
        rates,
        link=link,
        capacity_bps=capacity_bps,
        resource=resource,
        plmn=plmn,
        slices=listed,
    )
    return {
        "plan": plan.version,
        "policyVersion": plan.policy_version,
        "intervalStartUnixS": plan.interval_start_unix_s,
        "rRMPolicyRatio": ratios,
    }
