"""The controller's decisions without os-ken: which plan runs, what each switch gets.

Pure logic in the faucet manner: every method takes the time as ``now`` (seconds,
monotonic clock) and returns the operations to send per datapath; the os-ken
app only translates and sends them, and feeds replies back in.

Which plan runs (:class:`PlanKeeper`):

* at start-up, before the service was ever reached: the guarantees-only plan;
* a plan from the service replaces it as soon as it arrives;
* while the service is unreachable, the last plan keeps running until
  ``fallback_after_s`` seconds have passed since the service was last heard
  from; then the guarantees-only plan from the policy runs until a new plan
  arrives.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum

from sliceai.controller.counters import MeterSample, SliceMeterRates, SliceRate
from sliceai.controller.flows import (
    EnforcementConfig,
    Op,
    PlanRates,
    SwitchTables,
    TableBuilder,
    diff_tables,
    full_install,
    guarantees_only_rates,
)
from sliceai.policy.model import Direction, Policy


class PlanSource(str, Enum):
    STARTUP = "startup"  # guarantees-only, the service was never heard from
    SERVICE = "service"  # the latest plan from the service, which is reachable
    LAST_PLAN = "last-plan"  # the service is unreachable; its last plan is kept
    FALLBACK = "fallback"  # unreachable for longer than fallback_after_s: guarantees only


class PlanKeeper:
    """Chooses the plan in force.

    ``fallback_after_s``: seconds without the service before falling back.
    """

    def __init__(self, policy: Policy, fallback_after_s: float, now: float) -> None:
        if not fallback_after_s > 0:
            raise ValueError(f"fallback_after_s must be > 0 s, got {fallback_after_s}")
        self.fallback_after_s = fallback_after_s
        self._fallback: PlanRates = guarantees_only_rates(policy)
        self._plan: PlanRates | None = None
        self._plan_version: int | None = None
        self._connected = False
        self._last_heard = now

    def set_policy(self, policy: Policy) -> None:
        """New policy: its guarantees become the fallback; a plan naming other slices is dropped."""
        self._fallback = guarantees_only_rates(policy)
        if self._plan is not None and {n for n, _ in self._plan} - set(policy.slice_names):
            self._plan = None

    def plan_received(self, rates: PlanRates, now: float, version: int | None = None) -> None:
        self._plan = dict(rates)
        self._plan_version = version
        self._last_heard = now

    def service_heard(self, now: float) -> None:
        """Any message from the service (or a successful connect)."""
        self._connected = True
        self._last_heard = now

    def service_lost(self, now: float) -> None:
        if self._connected:
            self._last_heard = now
        self._connected = False

    def current(self, now: float) -> tuple[PlanRates, PlanSource]:
        """The plan in force at ``now`` and why."""
        if self._plan is None:
            return self._fallback, PlanSource.STARTUP
        if self._connected:
            return self._plan, PlanSource.SERVICE
        if now - self._last_heard < self.fallback_after_s:
            return self._plan, PlanSource.LAST_PLAN
        return self._fallback, PlanSource.FALLBACK

    @property
    def plan_version(self) -> int | None:
        return self._plan_version


@dataclass
class _Datapath:
    installed: SwitchTables


class ControllerCore:
    """Every switch's state and the plan in force; returns OpenFlow operations per datapath id."""

    def __init__(
        self, policy: Policy, config: EnforcementConfig, fallback_after_s: float, now: float
    ) -> None:
        self.policy = policy
        self.config = config
        self.keeper = PlanKeeper(policy, fallback_after_s, now)
        self.meter_rates = SliceMeterRates(policy)
        self._builder = TableBuilder(policy, config)
        self._datapaths: dict[int, _Datapath] = {}
        self.latest_rates: dict[int, dict[tuple[str, Direction], SliceRate]] = {}

    @property
    def datapath_ids(self) -> tuple[int, ...]:
        return tuple(sorted(self._datapaths))

    def _desired(self, now: float) -> SwitchTables:
        rates, _ = self.keeper.current(now)
        return self._builder.tables(rates)

    def datapath_up(self, datapath_id: int, now: float) -> list[Op]:
        """A switch (re)connected: its state is unknown, so clear it and install everything."""
        desired = self._desired(now)
        self._datapaths[datapath_id] = _Datapath(desired)
        self.meter_rates.forget(datapath_id)
        return full_install(desired)

    def datapath_down(self, datapath_id: int) -> None:
        self._datapaths.pop(datapath_id, None)
        self.meter_rates.forget(datapath_id)
        self.latest_rates.pop(datapath_id, None)

    def _sync(self, now: float) -> dict[int, list[Op]]:
        desired = self._desired(now)
        out: dict[int, list[Op]] = {}
        for dpid, dp in self._datapaths.items():
            ops = diff_tables(dp.installed, desired)
            dp.installed = desired
            if ops:
                out[dpid] = ops
        return out

    def plan_received(
        self, rates: PlanRates, now: float, version: int | None = None
    ) -> dict[int, list[Op]]:
        """A plan from the service (bit/s per slice and direction); raises on unknown slices."""
        self._builder.check(rates)  # validate before accepting
        self.keeper.plan_received(rates, now, version)
        self.keeper.service_heard(now)
        return self._sync(now)

    def policy_received(self, policy: Policy, now: float) -> dict[int, list[Op]]:
        """A new policy (from the service): new flows and meters where they differ."""
        self.policy = policy
        self._builder = TableBuilder(policy, self.config)
        self.keeper.set_policy(policy)
        self.meter_rates.set_policy(policy)
        return self._sync(now)

    def service_heard(self, now: float) -> None:
        self.keeper.service_heard(now)

    def service_lost(self, now: float) -> None:
        self.keeper.service_lost(now)

    def tick(self, now: float) -> dict[int, list[Op]]:
        """Periodic check: the operations needed when the plan in force changed (fallback)."""
        return self._sync(now)

    def meter_stats(
        self, datapath_id: int, samples: Iterable[MeterSample], now: float
    ) -> dict[tuple[str, Direction], SliceRate]:
        rates = self.meter_rates.update(datapath_id, samples, now)
        if rates:
            self.latest_rates[datapath_id] = rates
        return rates

    def installed(self, datapath_id: int) -> SwitchTables:
        return self._datapaths[datapath_id].installed


def summed_rates(
    per_datapath: Mapping[int, Mapping[tuple[str, Direction], SliceRate]],
) -> dict[tuple[str, Direction], SliceRate]:
    """Rates of all datapaths added up per slice and direction."""
    out: dict[tuple[str, Direction], SliceRate] = {}
    for rates in per_datapath.values():
        for key, r in rates.items():
            old = out.get(key)
            out[key] = (
                r
                if old is None
                else SliceRate(
                    old.carried_bps + r.carried_bps,
                    old.offered_bps + r.offered_bps,
                    old.dropped_bytes + r.dropped_bytes,
                )
            )
    return out
