"""The control loop: telemetry -> forecast -> solve -> plan, with fail-safes.

:class:`ControlLoop` runs in its own thread. Each interval it collects the
merged telemetry, appends it to the history, forecasts next-interval demand
quantiles, solves, and publishes a :class:`PlanRecord` to the :class:`PlanHub`
(which controller streams and watchers read). An interval ends when every live
source has sent its end-of-period batch (so decisions follow telemetry at
once), or when the interval timer runs out, whichever is first.

Fail-safes, each flagged in the plan's ``mode`` and ``explanation``:
- the model raises -> rolling empirical quantiles (``model-fallback``);
- the solver raises or takes longer than ``solve_deadline_s`` -> the last plan's
  rates (``last-plan``) for up to ``last_plan_limit`` intervals, then floors
  only (``guarantees-only``);
- a silent source -> its slices are marked stale and planned from the forecast.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sliceai.engine.forecasting import EmpiricalForecaster, Forecaster, history_needed
from sliceai.engine.grants import Grant, reserved_bps
from sliceai.engine.solving import Allocation, PlanSolver, guarantees_only, risk_quantile
from sliceai.engine.telemetry import CollectedTelemetry, TelemetryBuffer
from sliceai.policy import Policy

log = logging.getLogger(__name__)

BASE_LEVELS = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999)
MODES = ("optimized", "model-fallback", "last-plan", "guarantees-only")


@dataclass(frozen=True)
class PolicyState:
    """The running policy with everything derived from it; swapped as one reference."""

    version: int
    policy: Policy
    yaml: str
    solver: PlanSolver
    levels: npt.NDArray[np.float64]  # (Q,) quantile levels the forecaster is asked for


def quantile_levels(policy: Policy) -> npt.NDArray[np.float64]:
    """Base grid plus every slice's ``1 - risk``, sorted, unique, ``(Q,)``."""
    return np.unique(np.array([*BASE_LEVELS, *(1.0 - s.risk for s in policy.slices)]))


@dataclass(frozen=True)
class PlanRecord:
    """One published plan. Arrays are ``(n_slices, 2)`` bit/s (index 0 DL, 1 UL)."""

    version: int
    policy_version: int
    policy: Policy
    interval_start: float  # epoch s
    interval_s: float
    computed_at: float  # epoch s
    mode: str  # one of MODES
    rates_bps: npt.NDArray[np.float64]
    forecast_bps: npt.NDArray[np.float64]
    measured_bps: npt.NDArray[np.float64]
    granted_bps: npt.NDArray[np.float64]
    stale_slices: npt.NDArray[np.bool_]  # (n_slices,)
    stale_sources: tuple[str, ...]
    explanations: tuple[str, ...]  # one per slice
    explanation: str
    compute_ms: float
    grants: tuple[Grant, ...]
    trigger_time: float | None  # perf_counter s of the telemetry that closed the interval


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
    history: int = 512  # intervals kept for the forecaster
    solve_deadline_s: float | None = None  # None = half the interval
    last_plan_limit: int = 3  # intervals the last plan is repeated before guarantees-only
    min_gap_fraction: float = (
        0.25  # an early (telemetry-triggered) plan waits at least this x interval
    )


class ControlLoop:
    """Runs :meth:`step` every interval in a daemon thread until :meth:`stop`."""

    def __init__(
        self,
        state: Callable[[], PolicyState],
        grants: Callable[[], tuple[Grant, ...]],
        buffer: TelemetryBuffer,
        hub: PlanHub,
        forecaster: Forecaster,
        settings: LoopSettings,
        on_plan: Callable[[PlanRecord, CollectedTelemetry], None] | None = None,
    ) -> None:
        self._state = state
        self._grants = grants
        self.buffer = buffer
        self.hub = hub
        self.forecaster = forecaster
        self.fallback = EmpiricalForecaster()
        self.settings = settings
        self.on_plan = on_plan
        self._history: History | None = None
        self._version = 0
        self._last: tuple[int, Allocation] | None = None  # (policy version, allocation)
        self._solver_failures = 0
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_forecast: tuple[PolicyState, npt.NDArray[np.float64], bool, float] | None = None

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
        """Plan at once (after a policy change or a new grant)."""
        self._wake.set()
        self.buffer.period_complete.set()

    def _run(self) -> None:
        interval = self.settings.interval_s
        last = time.monotonic()
        while not self._stop.is_set():
            deadline = last + interval
            self.buffer.period_complete.wait(max(0.0, deadline - time.monotonic()))
            if self._stop.is_set():
                break
            now = time.monotonic()
            early_ok = now - last >= self.settings.min_gap_fraction * interval
            if now < deadline and not self._wake.is_set() and not early_ok:
                time.sleep(last + self.settings.min_gap_fraction * interval - now)
            self._wake.clear()
            last = time.monotonic()
            try:
                self.step()
            except Exception:  # the loop must survive anything; the next interval retries
                log.exception("control loop step failed")

    # -- one interval --------------------------------------------------------
    def step(self) -> PlanRecord:
        """Collect, forecast, solve and publish one plan; returns it."""
        t0 = time.perf_counter()
        state = self._state()
        policy = state.policy
        tel = self.buffer.collect()
        if tel.slice_names != policy.slice_names:  # the policy was swapped meanwhile
            state = self._state()
            policy = state.policy
            if tel.slice_names != policy.slice_names:
                self.buffer.rebind(policy.slice_names)
                tel = self.buffer.collect()
        names = policy.slice_names
        if self._history is None:
            needed = history_needed(self.forecaster, self.settings.interval_s)
            keep = max(self.settings.history, needed)
            self._history = History(names, keep)
        elif self._history.slice_names != names:
            self._history = self._history.rebind(names)
        self._history.append(tel.measured_bps)
        interval = self.settings.interval_s
        now = time.time()
        start = now - interval * self._history.count

        notes: list[str] = []
        mode = "optimized"
        series = self._history.series()
        try:
            q = self.forecaster.quantiles(series, state.levels, start, interval)
            if q.shape != (series.shape[0], len(state.levels)) or not np.isfinite(q).all():
                raise ValueError(f"forecaster returned shape {q.shape} or non-finite values")
        except Exception as exc:
            mode = "model-fallback"
            notes.append(
                f"model failed ({type(exc).__name__}: {str(exc)[:200]}); "
                "rolling empirical quantiles used"
            )
            q = self.fallback.quantiles(series, state.levels, start, interval)
        quantiles = np.maximum.accumulate(np.maximum(q, 0.0), axis=1).reshape(len(names), 2, -1)
        self.last_forecast = (state, quantiles, mode != "optimized", now)

        grants = self._grants()
        reserved = reserved_bps(policy, grants)
        previous = self._last[1] if self._last and self._last[0] == state.version else None
        deadline = self.settings.solve_deadline_s or interval / 2
        t_solve = time.perf_counter()
        try:
            alloc = state.solver.solve(state.levels, quantiles, previous, reserved)
            rates = np.asarray(alloc.rates_bps, dtype=np.float64)
            if rates.shape != (len(names), 2) or not np.isfinite(rates).all() or (rates < 0).any():
                raise ValueError(f"solver returned shape {rates.shape} or invalid rates")
            took = time.perf_counter() - t_solve
            if took > deadline:
                raise TimeoutError(
                    f"solve took {took * 1000:.1f} ms, deadline {deadline * 1000:.1f} ms"
                )
            self._solver_failures = 0
            self._last = (state.version, alloc)
            explanations = alloc.explanations
        except Exception as exc:
            self._solver_failures += 1
            why = f"solver failed ({type(exc).__name__}: {str(exc)[:200]})"
            if previous is not None and self._solver_failures <= self.settings.last_plan_limit:
                mode = "last-plan"
                rates = np.maximum(previous.rates_bps, guarantees_only(policy, reserved))
                notes.append(
                    f"{why}; last plan repeated "
                    f"({self._solver_failures}/{self.settings.last_plan_limit})"
                )
            else:
                mode = "guarantees-only"
                rates = guarantees_only(policy, reserved)
                notes.append(f"{why}; guarantees only")
            explanations = ("",) * len(names)
        if tel.stale_sources:
            notes.append(f"stale sources: {', '.join(sorted(tel.stale_sources))}")
        self._version += 1
        plan = PlanRecord(
            version=self._version,
            policy_version=state.version,
            policy=policy,
            interval_start=now,
            interval_s=interval,
            computed_at=time.time(),
            mode=mode,
            rates_bps=rates,
            forecast_bps=risk_quantile(policy, state.levels, quantiles),
            measured_bps=tel.measured_bps,
            granted_bps=reserved,
            stale_slices=tel.stale_slices,
            stale_sources=tel.stale_sources,
            explanations=tuple(explanations),
            explanation="; ".join(notes),
            compute_ms=(time.perf_counter() - t0) * 1000.0,
            grants=grants,
            trigger_time=tel.trigger_time,
        )
        self.hub.publish(plan)
        if self.on_plan is not None:
            try:
                self.on_plan(plan, tel)
            except Exception:
                log.exception("plan callback failed")
        return plan
