"""The engine: running policy, grants, telemetry buffer and control loop in one object.

The API layer (:mod:`sliceai.api`) only converts messages and calls these
methods; everything here is testable without gRPC. Every method that refuses
a request raises an :class:`~sliceai.engine.errors.EngineError` subclass and
leaves the state unchanged.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt

from sliceai.engine.clock import SYSTEM_CLOCK, Clock
from sliceai.engine.errors import (
    Conflict,
    Exhausted,
    Forbidden,
    InvalidInput,
    NotFound,
    Precondition,
)
from sliceai.engine.grants import (
    BwRequest,
    Grant,
    check_admission,
    check_standing,
    resolve_slice,
    validate_request,
)
from sliceai.engine.limits import LimitHits, Limits
from sliceai.engine.loop import ControlLoop, LoopSettings, PlanHub, PlanRecord, PolicyState
from sliceai.engine.planner_process import PlannerProcess, RemotePlanner
from sliceai.engine.queries import ForecastResult, forecast_query
from sliceai.engine.store import PolicyRecord, StateStore, StoreError
from sliceai.engine.telemetry import (
    CollectedTelemetry,
    TelemetryBuffer,
    check_rates,
    check_time,
)
from sliceai.planning import (
    Forecaster,
    Planner,
    PlannerSettings,
    PooledForecaster,
    RollingQuantileForecaster,
)
from sliceai.planning.planner import PlanSolver
from sliceai.policy import Policy, PolicyError, loads_policy
from sliceai.solver import SliceSolver

log = logging.getLogger(__name__)

MAX_POLICY_BYTES = 1 << 20
KPM_NAMES = {
    # name -> (direction index, kind); see proto/sliceai/v1/mec.proto KpmRecord
    "DRB.UEThpDl": (0, "thp"),
    "DRB.UEThpUl": (1, "thp"),
    "DRB.PdcpSduVolumeDL": (0, "vol"),
    "DRB.PdcpSduVolumeUL": (1, "vol"),
    "RRU.PrbUsedDl": (0, "prb"),
    "RRU.PrbUsedUl": (1, "prb"),
}
#: Plans between two saves of the risk control's state (and one more when the engine stops).
RISK_SAVE_EVERY = 10
RISK_STATE_KEY = "risk-control"


@dataclass(frozen=True)
class Caller:
    """Who is calling: ``role`` is "controller", "mec-app", "admin" or "anonymous"."""

    role: str
    identity: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


LOCAL_ADMIN = Caller("admin", "local")


@dataclass
class EngineSettings:
    interval_s: float = 1.0
    stale_after_intervals: float = 3.0
    loop: LoopSettings = field(default_factory=LoopSettings)
    limits: Limits = field(default_factory=Limits)


SolverFactory = Callable[[Policy], PlanSolver]


class Engine:
    """Owns the state of one sliceai service.

    ``forecaster``: what the planner forecasts with (default: rolling empirical
    quantiles); ``solver_factory``: builds a policy's solver (tests inject failing
    ones); ``clock``: where time is read (a :class:`~sliceai.engine.clock.ManualClock`
    in tests); ``planner_process``: plan each interval there
    (:mod:`sliceai.engine.planner_process`; it must build the same forecaster as
    ``forecaster``, and it solves with :class:`SliceSolver`); the engine stops it.
    """

    def __init__(
        self,
        store: StateStore,
        initial_policy_yaml: str | None = None,
        forecaster: Forecaster | None = None,
        solver_factory: SolverFactory = SliceSolver,
        settings: EngineSettings | None = None,
        policy_source: str = "<policy>",
        clock: Clock = SYSTEM_CLOCK,
        planner_process: PlannerProcess | None = None,
    ) -> None:
        self.planner_process = planner_process
        self.settings = settings or EngineSettings()
        self.settings.loop.interval_s = self.settings.interval_s
        self.limits = self.settings.limits
        self.settings.loop.replan_min_gap_s = self.limits.replan_min_gap_s
        #: Refusals by limit name (the API's stream limits count here too).
        self.limit_hits = LimitHits()
        self._forecasts = threading.BoundedSemaphore(self.limits.forecast_concurrency)
        self.store = store
        self.solver_factory = solver_factory
        self.clock = clock
        self.forecaster: Forecaster = forecaster or RollingQuantileForecaster()
        self._policy_lock = threading.Lock()  # serialises apply_policy
        self._grant_lock = threading.Lock()  # serialises grant changes
        record = store.latest_policy()
        grants = store.load_grants()
        if initial_policy_yaml is not None and (
            record is None or record.yaml != initial_policy_yaml
        ):
            policy = self._parse(initial_policy_yaml, policy_source)
            state = self._build_state(0, policy, initial_policy_yaml)
            self._check_grants_fit(policy, grants)
            record = store.add_policy(policy.name, initial_policy_yaml, "startup")
            self._state = replace(state, version=record.version)
        elif record is not None:
            self._state = self._build_state(
                record.version, self._parse(record.yaml, f"<stored v{record.version}>"), record.yaml
            )
        else:
            raise InvalidInput("no policy: give one (--policy) or a database holding one")
        self._restore_risk(self._state, store.load_state(RISK_STATE_KEY))
        self._plans_unsaved = 0
        self._policy_record: PolicyRecord = record
        self._grants: dict[str, Grant] = {g.allocation_id: g for g in grants}
        self._grants_tuple = tuple(self._grants.values())
        self.hub = PlanHub()
        self.buffer = TelemetryBuffer(
            self._state.policy.slice_names,
            self.settings.stale_after_intervals * self.settings.interval_s,
            clock,
            self.limits,
            self.limit_hits,
        )
        self.loop = ControlLoop(
            lambda: self._state,
            lambda: self._grants_tuple,
            self.buffer,
            self.hub,
            self.settings.loop,
            on_plan=self._on_plan,
            clock=clock,
        )
        self.on_plan_callbacks: list[Callable[[PlanRecord, CollectedTelemetry], None]] = []
        self.ready = threading.Event()

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> None:
        """Warm up (one plan from whatever is known), start the loop, then mark ready."""
        self.loop.step()
        self.loop.start()
        self.ready.set()

    def stop(self) -> None:
        self.ready.clear()
        self.loop.stop()
        self.hub.close()
        if self.planner_process is not None:
            self.planner_process.close()
        self._save_risk()

    def _on_plan(self, plan: PlanRecord, tel: CollectedTelemetry) -> None:
        self._plans_unsaved += 1
        if self._plans_unsaved >= RISK_SAVE_EVERY:
            self._save_risk()
        for cb in list(self.on_plan_callbacks):
            cb(plan, tel)

    def _save_risk(self) -> None:
        """Persist the risk control's levels (they must survive a restart)."""
        risk = self._state.planner.risk
        if risk is not None:
            try:
                self.store.save_state(RISK_STATE_KEY, risk.state())
            except StoreError as exc:  # the store reports the fault (health); retried later
                log.warning("risk-control state not saved: %s", exc)
        self._plans_unsaved = 0

    @staticmethod
    def _restore_risk(state: PolicyState, saved: object) -> None:
        """Give the new planner the risk state of the slices it shares with ``saved``; a
        state that does not parse is left out with a warning (levels start afresh)."""
        risk = state.planner.risk
        if risk is None or not isinstance(saved, dict):
            return
        try:
            risk.restore(saved)
        except ValueError as exc:
            log.warning("stored risk-control state ignored: %s", exc)

    # -- policy ----------------------------------------------------------------
    @property
    def state(self) -> PolicyState:
        return self._state

    @property
    def policy(self) -> Policy:
        return self._state.policy

    @property
    def policy_record(self) -> PolicyRecord:
        return self._policy_record

    @staticmethod
    def _parse(text: str, source: str) -> Policy:
        try:
            return loads_policy(text, source=source)
        except PolicyError as exc:
            raise InvalidInput("\n".join(str(i) for i in exc.issues)) from None
        except Exception as exc:  # the loader should only raise PolicyError; be safe anyway
            raise InvalidInput(f"{source}: not a valid policy: {exc}") from None

    def _build_state(self, version: int, policy: Policy, text: str) -> PolicyState:
        loop = self.settings.loop
        settings = PlannerSettings(
            solve_deadline_s=loop.deadline_s, last_plan_limit=loop.last_plan_limit
        )
        planner = Planner(
            policy, self.forecaster, settings, self.solver_factory(policy), self.clock.monotonic
        )
        if self.planner_process is None:
            return PolicyState(version, policy, text, planner)
        # the child's answer may take the whole interval; then the server process plans
        remote = RemotePlanner(planner, self.planner_process, loop.interval_s)
        return PolicyState(version, policy, text, remote)

    @staticmethod
    def _check_grants_fit(policy: Policy, grants: list[Grant]) -> None:
        """Precondition unless every standing grant's slice exists and all grants still fit."""
        orphans = [g.allocation_id for g in grants if g.request.slice not in policy.slice_names]
        if orphans:
            raise Precondition(
                f"standing grants in slices the policy drops: {', '.join(orphans[:10])}"
            )
        try:
            check_standing(policy, grants)
        except Exhausted as exc:
            raise Precondition(f"standing grants would not fit: {exc}") from None

    def apply_policy(
        self, text: str, caller: Caller, expected_version: int = 0, dry_run: bool = False
    ) -> PolicyRecord:
        """Validate, build the solver, check grants, store, swap; all or nothing."""
        if len(text.encode("utf-8")) > MAX_POLICY_BYTES:
            raise Exhausted(f"policy text over {MAX_POLICY_BYTES} bytes")
        with self._policy_lock:
            current = self._policy_record
            if expected_version and expected_version != current.version:
                raise Precondition(
                    f"running policy is version {current.version}, not {expected_version}"
                )
            policy = self._parse(text, "<applied policy>")
            try:
                state = self._build_state(current.version + 1, policy, text)
            except Exception as exc:
                raise InvalidInput(f"the solver rejected the policy: {exc}") from None
            with self._grant_lock:
                self._check_grants_fit(policy, list(self._grants.values()))
                if dry_run:
                    return PolicyRecord(
                        current.version + 1,
                        policy.name,
                        text,
                        "",
                        self.clock.wall(),
                        caller.identity,
                    )
                record = self.store.add_policy(policy.name, text, caller.identity)
                self.buffer.rebind(policy.slice_names)
                old = self._state.planner.risk
                self._restore_risk(state, None if old is None else old.state())
                self._state = replace(state, version=record.version)
                self._policy_record = record
        self.loop.wake()
        return record

    # -- telemetry ---------------------------------------------------------------
    def ingest(
        self,
        source_id: str,
        timestamp_unix_s: float,
        period_s: float,
        slices: Sequence[str] | npt.NDArray[np.int64],
        dl_bps: npt.NDArray[np.float64],
        ul_bps: npt.NDArray[np.float64],
        end_of_period: bool = True,
        table: tuple[str, ...] | None = None,
    ) -> int:
        """One controller telemetry batch; returns the slice samples accepted.

        ``slices``: names, or with ``table`` (the stream's slice table) indices into it.
        """
        self.buffer.check_rows(len(slices))
        check_time(timestamp_unix_s, period_s, self.clock.wall())
        return self.buffer.ingest(source_id, slices, dl_bps, ul_bps, end_of_period, table)

    def ingest_kpm(
        self,
        source_id: str,
        timestamp_unix_s: float,
        period_s: float,
        records: Sequence[tuple[str, str, float]],
        owner: str | None = None,
    ) -> int:
        """One E2SM-KPM report of ``(name, slice label, value)`` records; returns samples stored.

        ``owner``: the caller's identity; a new ``source_id`` counts against its
        ``sources_per_identity``.
        """
        check_time(timestamp_unix_s, period_s, self.clock.wall())
        self.buffer.check_rows(len(records))
        policy = self.policy
        thp: dict[tuple[str, int], float] = {}
        vol: dict[tuple[str, int], float] = {}
        values = np.array([r[2] for r in records], dtype=np.float64)
        check_rates("value", values)
        for name, label, value in records:
            kind = KPM_NAMES.get(name)
            if kind is None:
                raise InvalidInput(
                    f"unknown measurement {name[:64]!r}; supported: {', '.join(KPM_NAMES)}"
                )
            slice_name = resolve_slice(policy, label)
            d, what = kind
            if what == "thp":
                thp[(slice_name, d)] = (
                    thp.get((slice_name, d), 0.0) + value * 1e3
                )  # kbit/s -> bit/s
            elif what == "vol":
                vol[(slice_name, d)] = (
                    vol.get((slice_name, d), 0.0) + value * 1e6 / period_s
                )  # Mbit -> bit/s
        rates = {**vol, **thp}  # throughput wins over volume where both are given
        if not rates:
            return 0
        names = sorted({k[0] for k in rates})
        dl = np.array([rates.get((n, 0), np.nan) for n in names])
        ul = np.array([rates.get((n, 1), np.nan) for n in names])
        return self._ingest_partial(source_id, names, dl, ul, owner)

    def _ingest_partial(
        self,
        source_id: str,
        names: list[str],
        dl: npt.NDArray[np.float64],
        ul: npt.NDArray[np.float64],
        owner: str | None,
    ) -> int:
        # A KPM report may carry one direction only: keep the other from the source's last report.
        known = self.buffer.latest(source_id, names)
        dl = np.where(np.isnan(dl), known[:, 0], dl)
        ul = np.where(np.isnan(ul), known[:, 1], ul)
        return self.buffer.ingest(
            source_id, names, np.nan_to_num(dl), np.nan_to_num(ul), True, owner=owner
        )

    # -- grants ------------------------------------------------------------------
    def grants(self, caller: Caller, app_ins_id: str = "", slice_label: str = "") -> list[Grant]:
        out = list(self._grants_tuple)
        if not caller.is_admin:
            out = [g for g in out if g.app_ins_id == caller.identity]
        if app_ins_id:
            out = [g for g in out if g.app_ins_id == app_ins_id]
        if slice_label:
            name = resolve_slice(self.policy, slice_label)
            out = [g for g in out if g.request.slice == name]
        return out

    def _own(self, caller: Caller, app_ins_id: str) -> None:
        if not caller.is_admin and app_ins_id != caller.identity:
            raise Forbidden(
                f"app_ins_id {app_ins_id[:64]!r} is not the caller's identity {caller.identity!r}"
            )

    def request_grant(self, caller: Caller, request: BwRequest) -> Grant:
        """Admit and durably store a grant (committed before this returns)."""
        self._own(caller, request.app_ins_id)
        with self._grant_lock:
            policy = self.policy
            req = validate_request(policy, request)
            if any(g.request.same_target(req) for g in self._grants.values()):
                raise Conflict(
                    "an identical grant (app, slice, type, direction, filters) already exists"
                )
            check_admission(
                policy, tuple(self._grants.values()), _as_grant(req), self._risk_quantile()
            )
            now = self.clock.wall()
            grant = Grant(str(uuid.uuid4()), req, now, now)
            self.store.put_grant(grant)
            self._grants[grant.allocation_id] = grant
            self._grants_tuple = tuple(self._grants.values())
        self.loop.wake()
        return grant

    def _risk_quantile(self) -> npt.NDArray[np.float64] | None:
        """The latest plan's ``1 - risk`` demand quantiles if made under the running policy."""
        plan = self.hub.latest
        if plan is None or plan.policy_version != self._state.version:
            return None
        return plan.forecast_bps

    def _find(self, caller: Caller, allocation_id: str) -> Grant:
        grant = self._grants.get(allocation_id)
        if grant is None or (not caller.is_admin and grant.app_ins_id != caller.identity):
            raise NotFound(f"no grant {allocation_id[:64]!r}")
        return grant

    def modify_grant(self, caller: Caller, allocation_id: str, request: BwRequest) -> Grant:
        with self._grant_lock:
            old = self._find(caller, allocation_id)
            if request.app_ins_id != old.app_ins_id:
                raise InvalidInput("app_ins_id of a grant cannot change")
            policy = self.policy
            req = validate_request(policy, request)
            if any(
                g.allocation_id != allocation_id and g.request.same_target(req)
                for g in self._grants.values()
            ):
                raise Conflict("another grant has the same app, slice, type, direction and filters")
            grant = Grant(allocation_id, req, old.created_unix_s, self.clock.wall())
            check_admission(policy, tuple(self._grants.values()), grant, self._risk_quantile())
            self.store.put_grant(grant)
            self._grants[allocation_id] = grant
            self._grants_tuple = tuple(self._grants.values())
        self.loop.wake()
        return grant

    def release_grant(self, caller: Caller, allocation_id: str) -> Grant:
        with self._grant_lock:
            grant = self._find(caller, allocation_id)
            self.store.delete_grant(allocation_id)
            del self._grants[allocation_id]
            self._grants_tuple = tuple(self._grants.values())
        self.loop.wake()
        return grant

    def swap_member(self, index: int, member: Forecaster) -> Forecaster:
        """Put ``member`` in place ``index`` of the pooled forecaster, here and in the
        planner process (``serve --adapt``); returns the member it replaced."""
        pool = self.forecaster
        if not isinstance(pool, PooledForecaster):
            raise TypeError(f"{pool.name} is not a pooled forecaster")
        if self.planner_process is not None:
            self.planner_process.swap_member(index, member)
        return pool.swap_member(index, member)

    # -- forecast ------------------------------------------------------------------
    def forecast(
        self, slices: Sequence[str], horizon: int, levels: Sequence[float]
    ) -> ForecastResult:
        """Quantiles of the coming ``horizon`` intervals from the last loop step's history.

        At most ``Limits.forecast_slices`` slices (repeats count), ``forecast_horizon``
        intervals and ``forecast_concurrency`` calls at once (LimitExceeded otherwise).
        """
        limits = self.limits
        horizon = horizon or 1
        if horizon < 1:
            raise InvalidInput(f"horizon {horizon} below 1")
        if horizon > limits.forecast_horizon:
            raise self.limit_hits.hit(
                "forecast_horizon", f"horizon {horizon}; at most {limits.forecast_horizon}"
            )
        if len(slices) > limits.forecast_slices:
            raise self.limit_hits.hit(
                "forecast_slices", f"{len(slices)} slices; at most {limits.forecast_slices}"
            )
        if not self._forecasts.acquire(blocking=False):
            raise self.limit_hits.hit(
                "forecast_concurrency",
                f"{limits.forecast_concurrency} forecasts already running; retry shortly",
            )
        try:
            return self._forecast(slices, horizon, levels)
        finally:
            self._forecasts.release()

    def _forecast(
        self, slices: Sequence[str], horizon: int, levels: Sequence[float]
    ) -> ForecastResult:
        interval = self.settings.interval_s
        return forecast_query(
            self.forecaster,
            self.policy,
            self.loop.history,
            slices,
            horizon,
            levels,
            self.clock.wall(),
            interval,
        )


def _as_grant(req: BwRequest) -> Grant:
    return Grant("", req, 0.0, 0.0)
