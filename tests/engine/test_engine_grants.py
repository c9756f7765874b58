"""MEC 015 grants: validation, ownership, admission, durability."""

from __future__ import annotations

import contextlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from sliceai.engine import (
    LOCAL_ADMIN,
    BwRequest,
    Caller,
    Conflict,
    Engine,
    EngineSettings,
    Exhausted,
    Forbidden,
    InvalidInput,
    NotFound,
    Precondition,
    SessionFilter,
    StateStore,
)
from sliceai.engine.grants import protected_floor_bps, reserved_bps
from sliceai.planning import RollingQuantileForecaster
from sliceai.solver import DemandForecast, SliceSolver

APP = Caller("mec-app", "app-1")
OTHER = Caller("mec-app", "app-2")


def _req(
    app: str = "app-1", slice_name: str = "consults", bps: int = 5_000_000, **kw: object
) -> BwRequest:
    return BwRequest(app, slice_name, bps, kw.pop("direction", "both"), **kw)  # type: ignore[arg-type]


def test_grant_is_admitted_listed_and_released(engine: Engine) -> None:
    g = engine.request_grant(APP, _req())
    assert [x.allocation_id for x in engine.grants(APP)] == [g.allocation_id]
    assert engine.grants(OTHER) == []
    assert len(engine.grants(LOCAL_ADMIN)) == 1
    engine.release_grant(APP, g.allocation_id)
    assert engine.grants(LOCAL_ADMIN) == []


def test_slice_may_be_named_by_snssai(engine: Engine) -> None:
    g = engine.request_grant(APP, _req(slice_name="1-0000B1"))
    assert g.request.slice == "consults"


def test_app_may_not_act_for_another_app(engine: Engine) -> None:
    with pytest.raises(Forbidden):
        engine.request_grant(APP, _req(app="app-2"))
    g = engine.request_grant(OTHER, _req(app="app-2"))
    with pytest.raises(NotFound):
        engine.release_grant(APP, g.allocation_id)
    with pytest.raises(NotFound):
        engine.modify_grant(APP, g.allocation_id, _req(app="app-2", bps=1))
    assert len(engine.grants(LOCAL_ADMIN)) == 1


def test_admission_refuses_what_breaks_a_maximum_or_a_link(engine: Engine) -> None:
    # consults: guaranteed 20 Mbps, maximum 100 Mbps per direction; grants come on top.
    engine.request_grant(APP, _req(bps=80_000_000))
    with pytest.raises(Exhausted, match="maximum"):
        engine.request_grant(APP, _req(bps=1_000_000, direction="dl"))
    # cell-backhaul 500 Mbps: DL floors 2 + 35 + (20 + 80) + 1 = 138 Mbps, 362 Mbps left.
    engine.request_grant(APP, _req(slice_name="staff-embb", bps=350_000_000, direction="dl"))
    with pytest.raises(Exhausted, match="cell-backhaul"):
        engine.request_grant(
            OTHER, _req(app="app-2", slice_name="staff-embb", bps=15_000_000, direction="dl")
        )
    assert len(engine.grants(LOCAL_ADMIN)) == 2


def test_a_grant_inside_a_guarantee_still_needs_room(engine: Engine) -> None:
    # Backhaul DL: floors 2 + 35 + 20 + 1 = 58 Mbps, then grants of 400 (staff-embb)
    # and 25 (surgery-video) leave 17 of the 500 Mbps.
    engine.request_grant(APP, _req(slice_name="staff-embb", bps=400_000_000, direction="dl"))
    engine.request_grant(APP, _req(slice_name="surgery-video", bps=25_000_000, direction="dl"))
    # 18 Mbps fit inside consults' 20 Mbps guarantee, but the solver adds grants on top
    # of it: 501 Mbps, so a guaranteed slice would lose its floor.
    with pytest.raises(Exhausted, match="cell-backhaul"):
        engine.request_grant(OTHER, _req(app="app-2", bps=18_000_000, direction="dl"))
    engine.request_grant(OTHER, _req(app="app-2", bps=17_000_000, direction="dl"))


def test_admission_protects_the_forecast_risk_quantile(engine: Engine) -> None:
    engine.request_grant(APP, _req(slice_name="staff-embb", bps=400_000_000, direction="dl"))
    plan = engine.loop.step()  # no telemetry: quantiles at zero, floors protect
    consults = engine.policy.slice_index("consults")
    busy = plan.forecast_bps.copy()
    busy[consults] = 60e6  # consults expected to need 60 Mbps at its 1 - risk level
    engine.hub.publish(replace(plan, version=plan.version + 1, forecast_bps=busy))
    # 2 + 35 + (60 + 10) + 1 + 400 = 508 Mbps > 500: the grant would eat guarantees.
    with pytest.raises(Exhausted, match="guarantee"):
        engine.request_grant(OTHER, _req(app="app-2", bps=10_000_000, direction="dl"))
    engine.hub.publish(replace(plan, version=plan.version + 2))
    engine.request_grant(OTHER, _req(app="app-2", bps=10_000_000, direction="dl"))


def test_whatever_is_admitted_the_solver_plans_without_shortfall(engine: Engine) -> None:
    rng = np.random.default_rng(7)
    names = engine.policy.slice_names
    for k in range(60):
        req = _req(
            app=f"app-{k}",
            slice_name=str(rng.choice(names)),
            bps=int(rng.integers(1, 120)) * 1_000_000,
            direction=str(rng.choice(["dl", "ul", "both"])),
        )
        with contextlib.suppress(Exhausted):
            engine.request_grant(LOCAL_ADMIN, req)
    grants = engine.grants(LOCAL_ADMIN)
    assert 3 <= len(grants) < 60  # some admitted, some refused
    reserved = reserved_bps(engine.policy, grants)
    levels = np.array([0.5, 0.9, 0.99, 0.999])
    floor = protected_floor_bps(engine.policy, np.zeros_like(reserved))
    demand = DemandForecast.from_quantiles(levels, np.repeat(floor[:, :, None], 4, axis=2))
    plan = SliceSolver(engine.policy).solve(demand, reserved_bps=reserved)
    need = protected_floor_bps(engine.policy, reserved)
    assert np.all(plan.rates_bps >= need * (1 - 1e-9) - 1e-3)


def test_duplicate_request_is_a_conflict(engine: Engine) -> None:
    engine.request_grant(APP, _req())
    with pytest.raises(Conflict):
        engine.request_grant(APP, _req())


@pytest.mark.parametrize(
    "req",
    [
        _req(app=""),
        _req(app="bad id with spaces"),
        _req(bps=0),
        _req(bps=10**13),
        _req(direction="sideways"),
        _req(request_type="bulk"),
        _req(priority=300),
        _req(request_type="session"),  # needs filters
        _req(session_filters=(SessionFilter(protocol="UDP"),)),  # app-specific must not have them
        _req(request_type="session", session_filters=(SessionFilter(source_ip="999.1.1.1"),)),
        _req(request_type="session", session_filters=(SessionFilter(dst_ports=(0,)),)),
        _req(request_type="session", session_filters=(SessionFilter(protocol="QUIC"),)),
    ],
)
def test_malformed_requests_are_invalid_and_change_nothing(engine: Engine, req: BwRequest) -> None:
    with pytest.raises(InvalidInput):
        engine.request_grant(LOCAL_ADMIN, req)  # the admin may act for any app
    assert engine.grants(LOCAL_ADMIN) == []


def test_unknown_slice_is_not_found(engine: Engine) -> None:
    with pytest.raises(NotFound):
        engine.request_grant(APP, _req(slice_name="nope"))


def test_modify_replaces_or_keeps_the_old_grant(engine: Engine) -> None:
    g = engine.request_grant(APP, _req(bps=10_000_000))
    g2 = engine.modify_grant(APP, g.allocation_id, _req(bps=20_000_000))
    assert g2.allocation_id == g.allocation_id
    assert g2.request.fixed_allocation_bps == 20_000_000
    with pytest.raises(Exhausted):
        engine.modify_grant(APP, g.allocation_id, _req(bps=200_000_000))
    assert engine.grants(APP)[0].request.fixed_allocation_bps == 20_000_000


def test_grants_and_policy_survive_a_new_engine_on_the_same_file(
    tmp_path: Path, policy_text: str
) -> None:
    store = StateStore(tmp_path / "s.db")
    first = Engine(
        store, policy_text, RollingQuantileForecaster(), settings=EngineSettings(interval_s=0.2)
    )
    g = first.request_grant(APP, _req())
    store.close()
    store = StateStore(tmp_path / "s.db")
    second = Engine(store, None, RollingQuantileForecaster())
    assert [x.allocation_id for x in second.grants(LOCAL_ADMIN)] == [g.allocation_id]
    assert second.policy_record.version == 1
    store.close()


def test_restart_with_a_policy_that_strands_grants_is_refused(
    tmp_path: Path, policy_text: str
) -> None:
    store = StateStore(tmp_path / "s.db")
    first = Engine(store, policy_text, RollingQuantileForecaster())
    first.request_grant(APP, _req(slice_name="staff-embb", bps=300_000_000, direction="dl"))
    tighter = policy_text.replace("capacity: 500 Mbps", "capacity: 200 Mbps")
    with pytest.raises(Precondition, match="would not fit"):
        Engine(store, tighter, RollingQuantileForecaster())
    assert store.latest_policy().version == 1  # type: ignore[union-attr]
    changed = policy_text.replace("capacity: 500 Mbps", "capacity: 480 Mbps")
    assert Engine(store, changed, RollingQuantileForecaster()).policy_record.version == 2
    store.close()
