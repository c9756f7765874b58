"""The planner: history -> forecaster -> quantiles at the policy's levels -> solver
-> fall-backs -> rates with explanations. One implementation for the replay, the
live service and every study.

Each interval, :meth:`Planner.forecast` asks the forecaster for next-interval
quantiles at :attr:`Planner.levels` (a base grid plus every slice's ``1 - risk``)
and :meth:`Planner.step` turns one such forecast into rates:

1. the forecast: when the forecaster raises or returns non-finite values for an
   origin, the rolling empirical quantile of the same history stands in for every
   series it failed on (:func:`~sliceai.planning.forecasters.guarded_quantiles`;
   mode ``model-fallback``, with the reason; a pooled forecaster,
   :mod:`sliceai.planning.pool`, first recovers from a failing member itself);
2. the interval that just ended runs through a fluid queue behind each meter (the
   rates that were in force serve its measured demand plus what was queued; at most
   twice the latency budget's worth waits); what is left queued is planned on top of
   the next forecast, and an interval that violated the SLA (more than 1 % of its
   demand unserved, a queue longer than the latency budget, loss) is a miss;
3. online risk control (:mod:`sliceai.planning.risk`): each slice's quantile level
   moves so that its long-run share of misses keeps to its risk;
4. :class:`sliceai.solver.SliceSolver` covers each slice to its demand quantile at
   that level, warm-started from the plan in force, which also prices
   reconfiguration (no meter churn for small gains);
5. when the solver raises, returns bad rates or overruns ``solve_deadline_s`` (read
   on the injected ``clock``): the last plan's rates (never below the floors and
   grants) for ``last_plan_limit`` intervals (``last-plan``), then every slice's
   floor plus grants (``guarantees-only``).

The replay asks for the forecasts of a whole chunk at once (:meth:`forecast` with
many origins) and then steps through them; the live loop asks for one origin per
interval. Both run the same :meth:`step`, so their rates agree interval by interval.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Protocol

import numpy as np
import numpy.typing as npt

from sliceai.planning.baselines import RollingQuantileForecaster
from sliceai.planning.forecasters import FloatArray, Forecaster, IntArray, guarded_quantiles
from sliceai.planning.risk import GAIN, RiskControl
from sliceai.policy import Policy
from sliceai.solver import DemandForecast, Plan, SliceSolver
from sliceai.solver.problem import PolicyArrays

#: Quantile levels every forecast is asked for, besides each slice's ``1 - risk``.
LEVELS: tuple[float, ...] = (0.5, 0.75, 0.9, 0.95, 0.99)
#: What a plan came from, best first.
MODES = ("optimized", "model-fallback", "last-plan", "guarantees-only")
#: The queue the planner assumes behind each meter: twice the slice's latency budget at
#: its rate (the replay's link model has the same), unserved demand waiting to pass.
BUFFER_BUDGETS = 2.0
#: Bits under which a queue counts as clear (fluid rounding, not traffic).
BIT_TOLERANCE = 1e-3
#: Share of an interval's demand that may go unserved in it without an SLA violation
#: (the replay's :data:`sliceai.replay.metrics.SHORTFALL_TOLERANCE`).
SHORTFALL_TOLERANCE = 0.01


class PlanSolver(Protocol):
    """What the planner needs of a solver (:class:`sliceai.solver.SliceSolver`)."""

    def solve(
        self,
        demand: DemandForecast,
        previous: Plan | None = None,
        reserved_bps: object = None,
        target_levels: FloatArray | None = None,
    ) -> Plan: ...


def planning_levels(policy: Policy, base: tuple[float, ...] = LEVELS) -> FloatArray:
    """``base`` plus every slice's ``1 - risk``, sorted and unique, ``(Q,)``."""
    return np.unique(np.round([*base, *(1.0 - s.risk for s in policy.slices)], 9))


@dataclass(frozen=True)
class PlannerSettings:
    """``solve_deadline_s``: None for no deadline (the replay; the live loop passes half
    its interval). ``reconfiguration_price``: warm-start each solve from the plan in force,
    which prices meter changes; off, every interval is solved afresh. ``drain_backlog``:
    plan the demand left queued from the interval before on top of the forecast (off,
    every interval is planned for its own demand only). ``risk_control``:
    adapt each slice's level online (:mod:`sliceai.planning.risk`), ``risk_lowers`` also
    below ``1 - risk`` (on by default; off, never below it); ``risk_control`` off, every
    slice is covered to its ``1 - risk`` quantile as forecast."""

    levels: tuple[float, ...] = LEVELS
    reconfiguration_price: bool = True
    drain_backlog: bool = True
    risk_control: bool = True
    risk_gain: float = GAIN
    risk_lowers: bool = True
    solve_deadline_s: float | None = None
    last_plan_limit: int = 3

    def __post_init__(self) -> None:
        if self.last_plan_limit < 0:
            raise ValueError(f"last_plan_limit must be >= 0, got {self.last_plan_limit}")
        if self.solve_deadline_s is not None and self.solve_deadline_s <= 0:
            raise ValueError(f"solve_deadline_s must be > 0, got {self.solve_deadline_s}")


@dataclass(frozen=True)
class Forecast:
    """Next-interval demand quantiles ``(n_slices, 2, Q)`` bit/s at the planner's levels,
    for an interval of ``interval_s``, from ``source``; ``note`` says why the fallback
    stood in (empty when it did not)."""

    quantiles: FloatArray
    source: str
    interval_s: float
    note: str = ""

    @property
    def fallback(self) -> bool:
        return bool(self.note)


@dataclass(frozen=True, eq=False)
class PlanStep:
    """One interval's decision: ``rates_bps`` and ``target_bps`` (each slice's demand
    quantile at the level it was covered to) are ``(n_slices, 2)`` bit/s; ``levels`` those
    levels; ``mode`` one of :data:`MODES`; ``notes`` what went wrong, if anything; ``plan``
    the solver's plan (None in a fall-back); ``risk_notes`` what the risk control did, per
    slice."""

    rates_bps: FloatArray
    target_bps: FloatArray
    levels: FloatArray
    mode: str
    forecast: Forecast
    notes: tuple[str, ...]
    plan: Plan | None
    slice_names: tuple[str, ...]
    risk_notes: tuple[str, ...]

    @cached_property
    def explanations(self) -> tuple[str, ...]:
        """One line per slice: the rate, the guarantee, the binding (from the solver; empty
        in a fall-back), then what the risk control did."""
        solver = (
            ("",) * len(self.slice_names)
            if self.plan is None
            else tuple(str(self.plan.explanations[name]) for name in self.slice_names)
        )
        return tuple(
            "; ".join(p for p in pair if p) for pair in zip(solver, self.risk_notes, strict=True)
        )


@dataclass(frozen=True)
class PlannerSnapshot:
    """:meth:`Planner.snapshot`: the risk control's state, the plan in force (warm start),
    consecutive solver failures, the queue behind each meter and the coverage in force."""

    risk: RiskControl | None
    previous: Plan | None
    failures: int
    backlog: FloatArray
    in_force: tuple[FloatArray, npt.NDArray[np.bool_]] | None


class Planner:
    """Plans one policy's intervals in sequence (state: the plan in force, failures).

    ``solver``: defaults to a :class:`SliceSolver` of ``policy``; ``clock``: seconds,
    for the solve deadline (a fake in tests).
    """

    def __init__(
        self,
        policy: Policy,
        forecaster: Forecaster,
        settings: PlannerSettings | None = None,
        solver: PlanSolver | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.policy = policy
        self.forecaster = forecaster
        self.fallback = RollingQuantileForecaster()
        self.settings = settings or PlannerSettings()
        self.solver: PlanSolver = solver if solver is not None else SliceSolver(policy)
        self.clock = clock
        self.levels = planning_levels(policy, self.settings.levels)
        self._floors = Plan.guarantees_only(policy).rates_bps
        self._reach = PolicyArrays.of(policy).reach_bps
        self._default_levels = np.repeat(self.levels_for_risk()[:, None], 2, axis=1)
        self.risk = (
            RiskControl(
                policy.slice_names,
                [s.risk for s in policy.slices],
                self.settings.risk_gain,
                self.settings.risk_lowers,
            )
            if self.settings.risk_control
            else None
        )
        self._previous: Plan | None = None
        self._failures = 0
        self._budget_s = np.array([[s.latency_budget_ms / 1000.0] for s in policy.slices])
        self._backlog = np.zeros_like(self._floors)  # bits queued behind each meter
        # The rates in force and whether each series got the coverage it was planned to.
        self._in_force: tuple[FloatArray, npt.NDArray[np.bool_]] | None = None

    def levels_for_risk(self) -> FloatArray:
        """Each slice's ``1 - risk``, ``(n_slices,)``."""
        return np.array([1.0 - s.risk for s in self.policy.slices])

    def history_length(self, interval_s: float) -> int:
        """Intervals of history :meth:`forecast` reads (the forecaster's or its fallback's)."""
        return max(self.forecaster.history_length(interval_s), self.fallback.window)

    # -- forecasts -----------------------------------------------------------------
    def forecast(
        self, history: FloatArray, origins: IntArray, start_time: float, interval_s: float
    ) -> list[Forecast]:
        """Next-interval forecasts at ``origins`` ``(m,)`` from ``history`` ``(2 * n_slices,
        T)`` bit/s (row ``2 * slice + direction``, NaN missing; see
        :mod:`sliceai.planning.forecasters`); the fallback stands in where the forecaster fails."""
        org = np.asarray(origins, dtype=np.int64)
        n_slices = len(self.policy.slices)
        q, bad, notes = guarded_quantiles(
            self.forecaster, self.fallback, history, org, self.levels, start_time, interval_s
        )
        per_slice = q[:, :, 0, :].reshape(len(org), n_slices, 2, -1)
        names = [self.fallback.name if b.all() else self.forecaster.name for b in bad]
        return [Forecast(per_slice[k], names[k], interval_s, n) for k, n in enumerate(notes)]

    def plan(
        self,
        history: FloatArray,
        start_time: float,
        interval_s: float,
        reserved_bps: FloatArray | None = None,
        measured_bps: FloatArray | None = None,
    ) -> tuple[Forecast, PlanStep]:
        """The live loop's interval: the forecast after the whole ``history`` and the
        :meth:`step` it leads to (what :class:`sliceai.engine.planner_process.RemotePlanner`
        runs in the planner process)."""
        origin = np.array([history.shape[1]], dtype=np.int64)
        forecast = self.forecast(history, origin, start_time, interval_s)[0]
        return forecast, self.step(forecast, reserved_bps, measured_bps)

    def snapshot(self) -> PlannerSnapshot:
        """What this planner has learnt and holds in force, for :meth:`resume` in another
        process (the forecaster's online state travels apart). It shares this planner's
        objects: pickle it (as a pipe does) or copy it before this planner moves on."""
        return PlannerSnapshot(
            self.risk, self._previous, self._failures, self._backlog, self._in_force
        )

    def resume(self, snap: PlannerSnapshot) -> None:
        """Take over ``snap`` (of a planner of the same policy and settings; it becomes
        this planner's own)."""
        self.risk = snap.risk
        self._previous = snap.previous
        self._failures = snap.failures
        self._backlog = snap.backlog
        self._in_force = snap.in_force

    # -- one interval ---------------------------------------------------------------
    def step(
        self,
        forecast: Forecast,
        reserved_bps: FloatArray | None = None,
        measured_bps: FloatArray | None = None,
    ) -> PlanStep:
        """Rates for the next interval from ``forecast``; ``reserved_bps`` ``(n_slices, 2)``
        bit/s of admitted grants (None: none); ``measured_bps`` ``(n_slices, 2)`` the demand
        measured in the interval that just ended (NaN where unknown; None: nothing seen),
        which the risk control scores against the rates that were in force."""
        reserved = np.zeros_like(self._floors) if reserved_bps is None else reserved_bps
        if measured_bps is not None:
            self._score(np.asarray(measured_bps, dtype=np.float64), forecast.interval_s)
        levels = self._default_levels if self.risk is None else self.risk.levels()
        quantiles = forecast.quantiles
        if self.settings.drain_backlog:  # what queued up must pass on top of new demand
            quantiles = quantiles + (self._backlog / forecast.interval_s)[:, :, None]
        demand = DemandForecast(self.levels, quantiles)
        notes = [forecast.note] if forecast.note else []
        mode = "model-fallback" if forecast.fallback else "optimized"
        previous = self._previous if self.settings.reconfiguration_price else None
        started = self.clock()
        try:
            plan = self.solver.solve(demand, previous, reserved, levels)
            rates = np.asarray(plan.rates_bps, dtype=np.float64)
            if rates.shape != self._floors.shape or not np.isfinite(rates).all():
                raise ValueError(f"solver returned shape {rates.shape} or non-finite rates")
            if (rates < 0).any():
                raise ValueError("solver returned negative rates")
            took = self.clock() - started
            deadline = self.settings.solve_deadline_s
            if deadline is not None and took > deadline:
                raise TimeoutError(
                    f"solve took {took * 1000:.1f} ms, deadline {deadline * 1000:.1f} ms"
                )
        except Exception as exc:  # the solver must never stop the plan: fall back
            return self._fall_back(exc, forecast, demand, levels, reserved, notes)
        self._previous = plan
        self._failures = 0
        return self._result(rates, demand, levels, mode, forecast, notes, plan)

    def _score(self, measured: FloatArray, interval_s: float) -> None:
        """Run the interval that just ended through the queue behind each meter and feed
        its outcome to the risk control. A miss is an SLA violation as the replay counts
        one (:mod:`sliceai.replay.metrics`): more than :data:`SHORTFALL_TOLERANCE` of the
        interval's demand not served in it, a queue longer than the latency budget at
        the rate, or demand lost beyond the queue."""
        if self._in_force is None:
            return
        rates, delivered = self._in_force
        seen = np.isfinite(measured)
        offered = np.where(seen, measured, 0.0) * interval_s  # bits
        arrived = offered + self._backlog
        served = np.minimum(arrived, rates * interval_s)
        left = arrived - served
        buffer = BUFFER_BUDGETS * self._budget_s * rates
        self._backlog = np.where(seen, np.minimum(left, buffer), self._backlog)
        if self.risk is None:
            return
        with np.errstate(divide="ignore", invalid="ignore"):
            late = np.where(rates > 0, self._backlog / rates, np.inf) > self._budget_s
        short = offered - served > SHORTFALL_TOLERANCE * offered + BIT_TOLERANCE
        lost = left > buffer + BIT_TOLERANCE
        missed = short | (late & (self._backlog > BIT_TOLERANCE)) | lost
        fits = arrived <= self._reach * interval_s * (1 + 1e-9)
        self.risk.update(missed, seen & delivered & fits)

    def _fall_back(
        self,
        exc: Exception,
        forecast: Forecast,
        demand: DemandForecast,
        levels: FloatArray,
        reserved: FloatArray,
        notes: list[str],
    ) -> PlanStep:
        self._failures += 1
        floors = Plan.guarantees_only(self.policy, reserved).rates_bps
        why = f"solver failed ({type(exc).__name__}: {str(exc)[:200]})"
        limit = self.settings.last_plan_limit
        if self._previous is not None and self._failures <= limit:
            rates = np.maximum(self._previous.rates_bps, floors)
            notes.append(f"{why}; last plan repeated ({self._failures}/{limit})")
            return self._result(rates, demand, levels, "last-plan", forecast, notes, None)
        notes.append(f"{why}; guarantees only")
        return self._result(floors, demand, levels, "guarantees-only", forecast, notes, None)

    def _result(
        self,
        rates: FloatArray,
        demand: DemandForecast,
        levels: FloatArray,
        mode: str,
        forecast: Forecast,
        notes: list[str],
        plan: Plan | None,
    ) -> PlanStep:
        target = demand.quantile(levels)
        target = np.where(np.isinf(target), self._reach, target)
        # The coverage each series was planned to, and whether it got it.
        wanted = np.minimum(target, self._reach)
        delivered = rates >= wanted * (1 - 1e-6) - 1e-3
        self._in_force = (rates, np.asarray(delivered))
        names = self.policy.slice_names
        risk_notes = (
            tuple(self.risk.explain(i) for i in range(len(names)))
            if self.risk is not None
            else ("",) * len(names)
        )
        return PlanStep(
            rates, target, levels, mode, forecast, tuple(notes), plan, names, risk_notes
        )
