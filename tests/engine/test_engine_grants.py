"""MEC 015 grants: validation, ownership, admission, durability."""

from __future__ import annotations

from pathlib import Path

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
from sliceai.engine.forecasting import EmpiricalForecaster

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
    # consults: guaranteed 20 Mbps, maximum 100 Mbps per direction.
    engine.request_grant(APP, _req(bps=100_000_000))
    with pytest.raises(Exhausted, match="maximum"):
        engine.request_grant(APP, _req(bps=1_000_000, direction="dl"))
    # cell-backhaul 500 Mbps: DL floors 2 + 35 + 100 (grant) + 1 = 138 Mbps, so 362 Mbps are left.
    engine.request_grant(APP, _req(slice_name="staff-embb", bps=350_000_000, direction="dl"))
    with pytest.raises(Exhausted, match="cell-backhaul"):
        engine.request_grant(
            OTHER, _req(app="app-2", slice_name="staff-embb", bps=15_000_000, direction="dl")
        )
    assert len(engine.grants(LOCAL_ADMIN)) == 2


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
        store, policy_text, EmpiricalForecaster(), settings=EngineSettings(interval_s=0.2)
    )
    g = first.request_grant(APP, _req())
    store.close()
    store = StateStore(tmp_path / "s.db")
    second = Engine(store, None, EmpiricalForecaster())
    assert [x.allocation_id for x in second.grants(LOCAL_ADMIN)] == [g.allocation_id]
    assert second.policy_record.version == 1
    store.close()


def test_restart_with_a_policy_that_strands_grants_is_refused(
    tmp_path: Path, policy_text: str
) -> None:
    store = StateStore(tmp_path / "s.db")
    first = Engine(store, policy_text, EmpiricalForecaster())
    first.request_grant(APP, _req(slice_name="staff-embb", bps=300_000_000, direction="dl"))
    tighter = policy_text.replace("capacity: 500 Mbps", "capacity: 200 Mbps")
    with pytest.raises(Precondition, match="would not fit"):
        Engine(store, tighter, EmpiricalForecaster())
    assert store.latest_policy().version == 1  # type: ignore[union-attr]
    changed = policy_text.replace("capacity: 500 Mbps", "capacity: 480 Mbps")
    assert Engine(store, changed, EmpiricalForecaster()).policy_record.version == 2
    store.close()
