"""The control loop: telemetry in, the planner's plan out, every interval.

:class:`ControlLoop` runs in its own thread. Each interval it collects the merged
telemetry, appends it to the history and hands the history to the policy's
:class:`~sliceai.planning.Planner` (forecast -> solve -> fall-backs, the same
planner the replay runs), then publishes a :class:`PlanRecord` to the
:class:`PlanHub` (which controller streams and watchers read). An interval ends
when every live source has sent its end-of-period batch (so decisions follow
telemetry at once), or when the interval timer runs out, whichever is first.
Grant and policy changes ask for a plan at once too (:meth:`ControlLoop.wake`),
but such plans are coalesced: at most one per ``replan_min_gap_s`` however fast
grants change (:func:`next_plan_due`).
The loop keeps only threading, telemetry and publishing; the fall-backs (the
plan's ``mode``) are the planner's. A silent source: its slices are marked stale
and planned from the forecast. Time is read from the injected
:class:`~sliceai.engine.clock.Clock`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sliceai.engine.clock import SYSTEM_CLOCK, Clock
from sliceai.engine.grants import Grant, reserved_bps
from sliceai.engine.planner_process import RemotePlanner
from sliceai.engine.telemetry import MAX_LISTED_STALE, CollectedTelemetry, TelemetryBuffer
from sliceai.planning import Forecast, Planner, PlanStep
from sliceai.policy import Policy

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PolicyState:
    """The running policy with its planner; swapped as one reference."""

    version: int
    policy: Policy
    yaml: str
    planner: Planner | RemotePlanner  # RemotePlanner: planned in the planner process


@dataclass(frozen=True)
class PlanRecord:
    """One published plan. Arrays are ``(n_slices, 2)`` bit/s (index 0 DL, 1 UL).

    ``forecast_bps``: each slice's demand quantile at ``1 - risk``; ``mode`` one of
    :data:`sliceai.planning.MODES`; ``forecaster`` the forecaster the plan came from;
    ``latency_s``: last telemetry of the interval to this plan (None when the timer fired).
    """

    version: int
    policy_version: int
    policy: Policy
    interval_start: float  # epoch s
    interval_s: float
    computed_at: float  # epoch s
    mode: str
    forecaster: str
    rates_bps: npt.NDArray[np.float64]
    forecast_bps: npt.NDArray[np.float64]
    measured_bps: npt.NDArray[np.float64]
    granted_bps: npt.NDArray[np.float64]
    stale_slices: npt.NDArray[np.bool_]  # (n_slices,)
    stale_sources: tuple[str, ...]  # sorted, at most MAX_LISTED_STALE (the note counts the rest)
    explanations: tuple[str, ...]  # one per slice
    explanation: str
    compute_ms: float
    grants: tuple[Grant, ...]
    latency_s: float | None


class PlanHub:
    """Latest-plan broadcast: subscribers wait for a newer plan; slow ones skip plans."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._latest: PlanRecord | None = None
        self._closed = False

    @property
    def latest(self) -> PlanRecord | None:
        return self._latest

    def publish(self, plan: PlanRecord) -> None:
        with self._cond:
            self._latest = plan
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    def wait_newer(self, seen_version: int, timeout: float) -> PlanRecord | None:
        """The latest plan if newer than ``seen_version``, else wait up to ``timeout`` s for one."""
        with self._cond:
            self._cond.wait_for(
                lambda: (
                    self._closed
                    or (self._latest is not None and self._latest.version > seen_version)
                ),
                timeout,
            )
            plan = self._latest
        return plan if plan is not None and plan.version > seen_version else None


class History:
    """Ring of merged measurements ``(n_slices, 2, capacity)`` bit/s, NaN = missing."""

    def __init__(self, slice_names: tuple[str, ...], capacity: int) -> None:
        self.slice_names = slice_names
        self.capacity = capacity
        self.data = np.full((len(slice_names), 2, capacity), np.nan)
        self.count = 0

    def append(self, measured: npt.NDArray[np.float64]) -> None:
        self.data = np.roll(self.data, -1, axis=2)
        self.data[:, :, -1] = measured
        self.count = min(self.count + 1, self.capacity)

    def series(self) -> npt.NDArray[np.float64]:
        """``(n_slices * 2, count)`` oldest first; row ``2 * slice + direction``."""
        n = len(self.slice_names)
        return self.data[:, :, self.capacity - self.count :].reshape(n * 2, self.count)

    def rebind(self, slice_names: tuple[str, ...]) -> History:
        out = History(slice_names, self.capacity)
        out.count = self.count
        for i, name in enumerate(slice_names):
            if name in self.slice_names:
                out.data[i] = self.data[self.slice_names.index(name)]
        return out


@dataclass
class LoopSettings:
    interval_s: float = 1.0
    history: int = 512  # intervals kept for the forecaster (more when it reads more)
    solve_deadline_s: float | None = None  # None = half the interval
    last_plan_limit: int = 3  # intervals the last plan is repeated before guarantees-only
    min_gap_fraction: float = 0.25  # an early (telemetry-triggered) plan waits this x interval
    replan_min_gap_s: float = 0.5  # a plan a grant or policy change asked for waits this long

    @property
    def deadline_s(self) -> float:
        return self.solve_deadline_s or self.interval_s / 2


#: Longest the loop thread waits before looking at the clock again (a ManualClock moves
#: without waking anyone).
POLL_S = 0.05


def next_plan_due(settings: LoopSettings, last: float, woken: bool, period_complete: bool) -> float:
    """When the plan after the one made at ``last`` (monotonic s) is due.

    The interval timer, at the latest; earlier when every live source has ended
    its period (``min_gap_fraction`` x interval after the last plan) or when a
    grant or policy change asked for one (``replan_min_gap_s`` after the last plan,
    so changes faster than that share one plan).
    """
    due = last + settings.interval_s
    if period_complete:
        due = min(due, last + settings.min_gap_fraction * settings.interval_s)
    if woken:
        due = min(due, last + settings.replan_min_gap_s)
    return due


class ControlLoop:
    """Runs :meth:`step` every interval in a daemon thread until :meth:`stop`."""

    def __init__(
        self,
        state: Callable[[], PolicyState],
        grants: Callable[[], tuple[Grant, ...]],
        buffer: TelemetryBuffer,
        hub: PlanHub,
        settings: LoopSettings,
        on_plan: Callable[[PlanRecord, CollectedTelemetry], None] | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._state = state
        self._grants = grants
        self.buffer = buffer
        self.hub = hub
        self.settings = settings
        self.on_plan = on_plan
        self.clock = clock
        self._history: History | None = None
        self._version = 0
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        #: The last forecast, with the state and the epoch s it was made for.
        self.last_forecast: tuple[PolicyState, Forecast, float] | None = None

    @property
    def history(self) -> History | None:
        """Merged measurements so far (None before the first step)."""
        return self._history

    # -- thread ------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="sliceai-loop", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        self.buffer.period_complete.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def wake(self) -> None:
        """Ask for a plan now (a policy change or a grant); coalesced per ``replan_min_gap_s``."""
        self._wake.set()
        self.buffer.period_complete.set()

    def _run(self) -> None:
        now = self.clock.monotonic
        last = now()
        while not self._stop.is_set():
            woken = self._wake.is_set()
            complete = self.buffer.telemetry_complete
            wait = next_plan_due(self.settings, last, woken, complete) - now()
            if wait > 0:
                # sleep until due; until then telemetry or a wake may bring the plan forward
                # (both ring period_complete; once it rang, only the clock matters)
                bell = self.buffer.period_complete
                (self._stop if bell.is_set() else bell).wait(min(wait, POLL_S))
                continue
            self._wake.clear()
            last = now()
            try:
                self.step()
            except Exception:  # the loop must survive anything; the next interval retries
                log.exception("control loop step failed")

    # -- one interval --------------------------------------------------------
    def step(self) -> PlanRecord:
        """Collect, plan and publish one interval; returns the plan."""
        started = self.clock.monotonic()
        state, tel = self._collect()
        history = self._history_for(state)
        history.append(tel.measured_bps)
        interval = self.settings.interval_s
        now = self.clock.wall()
        series = history.series()
        first = now - interval * history.count
        grants = self._grants()
        reserved = reserved_bps(state.policy, grants)
        forecast, step = state.planner.plan(series, first, interval, reserved, tel.measured_bps)
        self.last_forecast = (state, forecast, now)
        plan = self._record(state, tel, step, grants, reserved, now, started)
        self.hub.publish(plan)
        if isinstance(state.planner, RemotePlanner):  # its state follows the plan: mirror it
            state.planner.settle()
        if self.on_plan is not None:
            try:
                self.on_plan(plan, tel)
            except Exception:
                log.exception("plan callback failed")
        return plan

    def _collect(self) -> tuple[PolicyState, CollectedTelemetry]:
        """The running state and this interval's telemetry, under the same policy."""
        state = self._state()
        tel = self.buffer.collect()
        if tel.slice_names != state.policy.slice_names:  # the policy was swapped meanwhile
            state = self._state()
            if tel.slice_names != state.policy.slice_names:
                self.buffer.rebind(state.policy.slice_names)
                tel = self.buffer.collect()
        return state, tel

    def _history_for(self, state: PolicyState) -> History:
        names = state.policy.slice_names
        if self._history is None:
            needed = state.planner.history_length(self.settings.interval_s)
            self._history = History(names, max(self.settings.history, needed))
        elif self._history.slice_names != names:
            self._history = self._history.rebind(names)
        return self._history

    def _record(
        self,
        state: PolicyState,
        tel: CollectedTelemetry,
        step: PlanStep,
        grants: tuple[Grant, ...],
        reserved: npt.NDArray[np.float64],
        now: float,
        started: float,
    ) -> PlanRecord:
        notes = list(step.notes)
        stale = tuple(sorted(tel.stale_sources)[:MAX_LISTED_STALE])
        if stale:
            more = len(tel.stale_sources) - len(stale)
            notes.append(
                f"stale sources: {', '.join(stale)}" + (f" and {more} more" if more else "")
            )
        self._version += 1
        done = self.clock.monotonic()
        return PlanRecord(
            version=self._version,
            policy_version=state.version,
            policy=state.policy,
            interval_start=now,
            interval_s=self.settings.interval_s,
            computed_at=self.clock.wall(),
            mode=step.mode,
            forecaster=step.forecast.source,
            rates_bps=step.rates_bps,
            forecast_bps=step.target_bps,
            measured_bps=tel.measured_bps,
            granted_bps=reserved,
            stale_slices=tel.stale_slices,
            stale_sources=stale,
            explanations=step.explanations,
            explanation="; ".join(notes),
            compute_ms=(done - started) * 1000.0,
            grants=grants,
            latency_s=None if tel.trigger_time is None else max(0.0, done - tel.trigger_time),
        )
