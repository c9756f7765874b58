"""The engine's limits (issue #29): request sizes, telemetry sources, one rate check on
every telemetry path, grant uniqueness on modify, coalesced replans."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from sliceai.engine import (
    LOCAL_ADMIN,
    BwRequest,
    Conflict,
    Engine,
    EngineSettings,
    InvalidInput,
    StateStore,
)
from sliceai.engine.clock import ManualClock
from sliceai.engine.limits import LimitExceeded, LimitHits, Limits
from sliceai.engine.loop import LoopSettings, next_plan_due
from sliceai.engine.telemetry import MAX_LISTED_STALE, TelemetryBuffer
from sliceai.planning import RollingQuantileForecaster

NAMES = ("a", "b", "c")


def _arr(*v: float) -> np.ndarray:
    return np.array(v, dtype=np.float64)


def _engine(
    tmp_path: Path, policy_text: str, clock: ManualClock | None = None, **kw: object
) -> Engine:
    store = StateStore(tmp_path / "limits.db")
    settings = EngineSettings(interval_s=1.0, limits=Limits(**kw))  # type: ignore[arg-type]
    args = {} if clock is None else {"clock": clock.clock}
    return Engine(store, policy_text, RollingQuantileForecaster(), settings=settings, **args)  # type: ignore[arg-type]


# -- the Limits dataclass ---------------------------------------------------------


def test_limits_from_name_value_pairs() -> None:
    limits = Limits().with_settings(["streams_per_identity=3", "source-expiry-s=12.5"])
    assert limits.streams_per_identity == 3
    assert limits.source_expiry_s == 12.5
    assert limits.workers == limits.controller_streams + limits.watch_streams + limits.unary_workers
    with pytest.raises(ValueError, match="NAME=VALUE"):
        Limits().with_settings(["no_such_limit=1"])
    with pytest.raises(ValueError, match="not a number"):
        Limits().with_settings(["sources=many"])
    with pytest.raises(ValueError, match="positive"):
        Limits().with_settings(["sources=0"])
    with pytest.raises(ValueError, match="anonymous_streams"):
        Limits(watch_streams=4, anonymous_streams=5)


def test_hits_are_counted_by_name_and_heard() -> None:
    hits = LimitHits()
    heard: list[str] = []
    hits.listeners.append(heard.append)
    err = hits.hit("sources", "too many")
    assert isinstance(err, LimitExceeded)
    assert err.limit == "sources"
    hits.hit("sources", "too many")
    assert hits.count("sources") == 2
    assert hits.count("batch_rows") == 0
    assert heard == ["sources", "sources"]


# -- request sizes ------------------------------------------------------------------


def test_forecast_slices_and_horizon_are_capped(tmp_path: Path, policy_text: str) -> None:
    eng = _engine(tmp_path, policy_text, forecast_slices=4, forecast_horizon=8)
    eng.loop.step()
    assert eng.forecast(["consults"] * 4, 8, [0.5]).values.shape == (4, 2, 8, 1)
    with pytest.raises(LimitExceeded, match="at most 4"):
        eng.forecast(["consults"] * 5, 1, [0.5])
    with pytest.raises(LimitExceeded, match="at most 8"):
        eng.forecast(["consults"], 9, [0.5])
    assert eng.limit_hits.count("forecast_slices") == 1
    assert eng.limit_hits.count("forecast_horizon") == 1
    eng.store.close()


class BlockingForecaster(RollingQuantileForecaster):
    """Rolling quantiles; once ``armed``, each call sets ``entered`` and waits for ``release``."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = False
        self.entered = threading.Event()
        self.release = threading.Event()

    def quantiles_at(self, *args, **kw):  # type: ignore[no-untyped-def]
        if self.armed:
            self.entered.set()
            self.release.wait(10)
        return super().quantiles_at(*args, **kw)


def test_forecasts_beyond_the_concurrency_limit_are_refused(
    tmp_path: Path, policy_text: str
) -> None:
    blocking = BlockingForecaster()
    store = StateStore(tmp_path / "c.db")
    eng = Engine(
        store,
        policy_text,
        blocking,
        settings=EngineSettings(limits=Limits(forecast_concurrency=1)),
    )
    eng.loop.step()
    blocking.armed = True
    worker = threading.Thread(target=eng.forecast, args=(["consults"], 1, [0.5]))
    worker.start()
    assert blocking.entered.wait(10)
    with pytest.raises(LimitExceeded, match="already running"):
        eng.forecast(["consults"], 1, [0.5])
    blocking.release.set()
    worker.join(10)
    assert eng.forecast(["consults"], 1, [0.5]).values.shape == (1, 2, 1, 1)  # free again
    assert eng.limit_hits.count("forecast_concurrency") == 1
    store.close()


def test_batch_rows_limit_on_every_telemetry_path(tmp_path: Path, policy_text: str) -> None:
    eng = _engine(tmp_path, policy_text, batch_rows=3)
    now = time.time()
    eng.ingest("ok", now, 1.0, ["consults"] * 3, _arr(1, 1, 1), _arr(1, 1, 1))
    with pytest.raises(LimitExceeded):
        eng.ingest("big", now, 1.0, ["consults"] * 4, _arr(1, 1, 1, 1), _arr(1, 1, 1, 1))
    with pytest.raises(LimitExceeded):
        eng.ingest_kpm("kpm", now, 1.0, [("DRB.UEThpDl", "consults", 1.0)] * 4)
    assert eng.limit_hits.count("batch_rows") == 2
    assert set(eng.buffer.sources()) == {"ok"}
    eng.store.close()


# -- one rate validation ----------------------------------------------------------------


def test_a_slice_summed_over_the_rate_ceiling_is_refused_on_every_path(
    tmp_path: Path, policy_text: str
) -> None:
    """4096 x 9e12 bit/s naming one slice was accepted by Connect while KPM refused the sum."""
    eng = _engine(tmp_path, policy_text)
    now = time.time()
    n = 4096
    with pytest.raises(InvalidInput, match="sum"):
        eng.ingest("by-name", now, 1.0, ["consults"] * n, np.full(n, 9e12), np.zeros(n))
    table = ("consults",)
    with pytest.raises(InvalidInput, match="sum"):
        eng.ingest(
            "by-id",
            now,
            1.0,
            np.zeros(n, dtype=np.int64),
            np.zeros(n),
            np.full(n, 9e12),
            True,
            table,
        )
    with pytest.raises(InvalidInput):  # 9e9 kbit/s twice: 1.8e13 bit/s
        eng.ingest_kpm("kpm", now, 1.0, [("DRB.UEThpDl", "consults", 9e9)] * 2)
    assert eng.buffer.sources() == {}
    # under the ceiling the same shapes are fine, and stored as the sum
    eng.ingest("by-name", now, 1.0, ["consults"] * 2, _arr(4e12, 5e12), _arr(0, 0))
    eng.ingest_kpm("kpm", now, 1.0, [("DRB.UEThpDl", "vitals", 4e9)] * 2)
    tel = eng.buffer.collect()
    assert tel.measured_bps[eng.policy.slice_index("consults"), 0] == 9e12
    assert tel.measured_bps[eng.policy.slice_index("vitals"), 0] == 8e12
    eng.store.close()


def test_negative_rows_cannot_cancel_into_an_accepted_sum() -> None:
    buf = TelemetryBuffer(NAMES, 60)
    with pytest.raises(InvalidInput):
        buf.ingest("s", ["a", "a"], _arr(-1e13, 1e13), _arr(0, 0))


# -- telemetry sources ------------------------------------------------------------------------


def test_sources_are_capped_and_expire(tmp_path: Path) -> None:
    clock = ManualClock()
    hits = LimitHits()
    limits = Limits(sources=3, source_expiry_s=30.0)
    buf = TelemetryBuffer(NAMES, 5.0, clock.clock, limits, hits)
    for k in range(3):
        buf.ingest(f"s{k}", ["a"], _arr(1.0), _arr(1.0))
    with pytest.raises(LimitExceeded, match="3 telemetry sources"):
        buf.ingest("s3", ["a"], _arr(1.0), _arr(1.0))
    assert hits.count("sources") == 1
    buf.ingest("s0", ["b"], _arr(2.0), _arr(2.0))  # a known source still reports
    clock.advance(20.0)
    buf.ingest("s1", ["a"], _arr(1.0), _arr(1.0))
    tel = buf.collect()  # s0, s2 stale (20 s > 5 s), not expired (< 30 s)
    assert set(tel.stale_sources) == {"s0", "s2"}
    with pytest.raises(LimitExceeded):
        buf.ingest("s3", ["a"], _arr(1.0), _arr(1.0))
    clock.advance(15.0)  # s0 and s2 silent 35 s: forgotten when room is needed
    buf.ingest("s3", ["a"], _arr(1.0), _arr(1.0))
    assert set(buf.sources()) == {"s1", "s3"}
    clock.advance(31.0)
    buf.collect()  # every collect forgets expired sources too
    assert buf.sources() == {}


def test_expiry_never_comes_before_staleness() -> None:
    buf = TelemetryBuffer(NAMES, 90.0, limits=Limits(source_expiry_s=10.0))
    assert buf.expiry_s == 90.0


def test_sources_per_identity(tmp_path: Path, policy_text: str) -> None:
    clock = ManualClock()
    eng = _engine(tmp_path, policy_text, clock, sources_per_identity=2, source_expiry_s=10.0)
    now = clock.clock.wall()
    rec = [("DRB.UEThpDl", "consults", 1.0)]
    eng.ingest_kpm("x1", now, 1.0, rec, owner="controller/a")
    eng.ingest_kpm("x2", now, 1.0, rec, owner="controller/a")
    with pytest.raises(LimitExceeded, match="feeds 2 sources"):
        eng.ingest_kpm("x3", now, 1.0, rec, owner="controller/a")
    eng.ingest_kpm("y1", now, 1.0, rec, owner="controller/b")  # another identity is not hurt
    eng.ingest_kpm("x1", now, 1.0, rec, owner="controller/a")  # nor an existing source
    assert eng.limit_hits.count("sources_per_identity") == 1
    clock.advance(11.0)
    eng.ingest_kpm("x3", clock.clock.wall(), 1.0, rec, owner="controller/a")  # x1, x2 expired
    assert set(eng.buffer.sources()) == {"x3"}
    eng.store.close()


def test_plans_name_a_bounded_number_of_stale_sources(tmp_path: Path, policy_text: str) -> None:
    clock = ManualClock()
    eng = _engine(tmp_path, policy_text, clock)
    now = clock.clock.wall()
    for k in range(200):
        eng.ingest(f"src-{k:03d}", now, 1.0, ["consults"], _arr(1.0), _arr(1.0))
    clock.advance(10.0)  # stale (3 s) but not expired (60 s)
    plan = eng.loop.step()
    assert len(plan.stale_sources) == MAX_LISTED_STALE
    assert plan.stale_sources[0] == "src-000"
    assert f"and {200 - MAX_LISTED_STALE} more" in plan.explanation
    clock.advance(60.0)
    assert eng.loop.step().stale_sources == ()  # expired: forgotten
    eng.store.close()


# -- grants ------------------------------------------------------------------------------------


def test_modify_cannot_make_a_grant_a_copy_of_another(tmp_path: Path, policy_text: str) -> None:
    eng = _engine(tmp_path, policy_text)
    a = eng.request_grant(LOCAL_ADMIN, BwRequest("app-1", "consults", 1_000_000, "dl"))
    b = eng.request_grant(LOCAL_ADMIN, BwRequest("app-1", "consults", 2_000_000, "ul"))
    with pytest.raises(Conflict):
        eng.modify_grant(LOCAL_ADMIN, b.allocation_id, BwRequest("app-1", "consults", 3, "dl"))
    assert eng.grants(LOCAL_ADMIN)[1].request.direction == "ul"  # unchanged
    # a grant may still be modified into a new version of itself
    eng.modify_grant(LOCAL_ADMIN, a.allocation_id, BwRequest("app-1", "consults", 7, "dl"))
    eng.store.close()


# -- replans ------------------------------------------------------------------------------------


def test_next_plan_due() -> None:
    s = LoopSettings(interval_s=1.0, min_gap_fraction=0.25, replan_min_gap_s=0.5)
    assert next_plan_due(s, 10.0, woken=False, period_complete=False) == 11.0
    assert next_plan_due(s, 10.0, woken=False, period_complete=True) == 10.25
    assert next_plan_due(s, 10.0, woken=True, period_complete=False) == 10.5
    assert next_plan_due(s, 10.0, woken=True, period_complete=True) == 10.25
    s.replan_min_gap_s = 5.0  # never later than the timer
    assert next_plan_due(s, 10.0, woken=True, period_complete=False) == 11.0


def _wait_for(predicate: object, timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.01)
    return False


def test_grant_churn_is_coalesced_to_one_plan_per_gap(tmp_path: Path, policy_text: str) -> None:
    """Grants changing as fast as they can: one plan per replan_min_gap_s of the engine's clock."""
    clock = ManualClock()
    store = StateStore(tmp_path / "churn.db")
    eng = Engine(
        store,
        policy_text,
        RollingQuantileForecaster(),
        settings=EngineSettings(interval_s=100.0, limits=Limits(replan_min_gap_s=2.0)),
        clock=clock.clock,
    )
    eng.start()
    try:
        first = eng.hub.latest
        assert first is not None
        stop = threading.Event()
        changes = [0]

        def churn() -> None:
            while not stop.is_set():
                g = eng.request_grant(LOCAL_ADMIN, BwRequest("app-1", "consults", 1_000, "dl"))
                eng.release_grant(LOCAL_ADMIN, g.allocation_id)
                changes[0] += 2

        def version() -> int:
            plan = eng.hub.latest
            assert plan is not None
            return plan.version - first.version

        worker = threading.Thread(target=churn)
        worker.start()
        try:
            for k in range(1, 4):
                time.sleep(0.3)  # the clock stands still: no plan, however many changes
                assert version() == k - 1
                clock.advance(2.0)
                assert _wait_for(lambda k=k: version() >= k)  # type: ignore[misc]
            time.sleep(0.3)
            assert version() == 3
        finally:
            stop.set()
            worker.join(10)
        assert changes[0] > 20  # the grants did churn meanwhile
    finally:
        eng.stop()
        store.close()
