"""The os-ken (or Ryu) app: a thin shim between OpenFlow events and :class:`ControllerCore`.

Threads: the framework's event loop runs every handler here, and it is the only
thread that touches datapaths or the core. The gRPC stream runs in its own
native thread (:class:`ServiceLink`) and talks through a thread-safe queue; a
small pump (a framework thread, green under Ryu) drains that queue into this
app's event queue and posts a poll tick every ``poll_interval_s``.

Settings come from :func:`configure` (the ``sliceai controller`` launcher) or,
when a framework manager loads this module itself (``ryu-manager``), from the
``SLICEAI_CONTROLLER_ARGS`` environment variable holding the same options.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import shlex
import time
from typing import Any, ClassVar

from sliceai.controller import ofmsgs
from sliceai.controller._framework import (
    DEAD_DISPATCHER,
    MAIN_DISPATCHER,
    BaseApp,
    event,
    hub,
    ofp_event,
    ofproto_v1_3,
    on_event,
)
from sliceai.controller.core import ControllerCore, summed_rates
from sliceai.controller.counters import CounterRates, MeterSample, port_rates
from sliceai.controller.flows import Op, ops_summary
from sliceai.controller.service_link import LinkEvent, ServiceLink, telemetry_batch
from sliceai.controller.settings import AppSettings, settings_from_command_line
from sliceai.policy import DIRECTIONS, load_policy, loads_policy

LOG = logging.getLogger("sliceai.controller")
ENV_ARGS = "SLICEAI_CONTROLLER_ARGS"
_PUMP_PERIOD_S = 0.005


_settings: AppSettings | None = None


def configure(settings: AppSettings) -> None:
    """Set the settings the next :class:`SliceController` instance uses."""
    global _settings
    _settings = settings


def _current_settings() -> AppSettings:
    if _settings is not None:
        return _settings
    args = os.environ.get(ENV_ARGS)
    if not args:
        raise RuntimeError(
            f"sliceai controller app: no settings; set {ENV_ARGS} or use `sliceai controller`"
        )
    return settings_from_command_line(shlex.split(args))


class EventLink(event.EventBase):  # type: ignore[misc]
    """Something the service link saw (a plan, a policy, connected, lost)."""

    def __init__(self, link_event: LinkEvent) -> None:
        super().__init__()
        self.link_event = link_event


class EventTick(event.EventBase):  # type: ignore[misc]
    """Time to poll counters and re-check which plan is in force."""


class SliceController(BaseApp):  # type: ignore[misc]
    """Enforces sliceai plans as OpenFlow 1.3 meters on every connected switch."""

    OFP_VERSIONS: ClassVar[list[int]] = [ofproto_v1_3.OFP_VERSION]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.settings = _current_settings()
        policy = load_policy(self.settings.policy_path)
        self.core = ControllerCore(
            policy, self.settings.enforcement, self.settings.fallback_after_s, time.monotonic()
        )
        self.datapaths: dict[int, Any] = {}
        self.link = (
            None
            if self.settings.link is None
            else ServiceLink(self.settings.link, lambda: self.core.datapath_ids)
        )
        self._pending_barriers: dict[tuple[int, int], float] = {}
        self.apply_latency_ms: collections.deque[float] = collections.deque(maxlen=1000)
        self._meter_replies: dict[int, list[MeterSample]] = {}
        self._last_poll_reply: dict[int, float] = {}
        # Datapaths polled this round that have not answered yet: the service plans at once
        # when the last batch of a round says end_of_period, so only that one says it.
        self._round_pending: set[int] = set()
        self._port_counters = CounterRates()
        self._port_rates: dict[int, dict[int, tuple[float, float]]] = {}
        self._service_connected = False

    # -- lifecycle ------------------------------------------------------------------
    def start(self) -> Any:
        thread = super().start()
        if self.link is not None:
            self.link.start()
        self.threads.append(hub.spawn(self._pump))
        return thread

    def stop(self) -> None:
        if self.link is not None:
            self.link.stop()
        super().stop()

    def _pump(self) -> None:
        next_tick = time.monotonic()
        while self.is_active:
            if self.link is not None:
                while not self.link.inbox.empty():
                    self.send_event(self.name, EventLink(self.link.inbox.get_nowait()))
            now = time.monotonic()
            if now >= next_tick:
                next_tick = now + self.settings.poll_interval_s
                self.send_event(self.name, EventTick())
            hub.sleep(_PUMP_PERIOD_S)

    # -- sending ----------------------------------------------------------------------
    def _send(self, dpid: int, ops: list[Op], received_at: float | None) -> None:
        dp = self.datapaths.get(dpid)
        if dp is None or not ops:
            return
        for msg in ofmsgs.messages(dp, ops):
            dp.send_msg(msg)
        barrier = dp.ofproto_parser.OFPBarrierRequest(dp)
        dp.send_msg(barrier)
        if received_at is not None:
            self._pending_barriers[(dpid, barrier.xid)] = received_at
        LOG.info("datapath %016x: %s", dpid, ops_summary(ops))

    def _send_all(self, per_dp: dict[int, list[Op]], received_at: float | None) -> None:
        for dpid, ops in per_dp.items():
            self._send(dpid, ops, received_at)

    # -- switch events --------------------------------------------------------------
    @on_event(ofp_event.EventOFPStateChange, [MAIN_DISPATCHER, DEAD_DISPATCHER])
    def _state_change(self, ev: Any) -> None:
        dp = ev.datapath
        dpid: int | None = dp.id
        if dpid is None:
            return
        if ev.state == MAIN_DISPATCHER:
            self.datapaths[dpid] = dp
            ops = self.core.datapath_up(dpid, time.monotonic())
            LOG.info("datapath %016x connected: installing", dpid)
            self._send(dpid, ops, None)
        elif ev.state == DEAD_DISPATCHER and self.datapaths.get(dpid) is dp:
            LOG.warning("datapath %016x disconnected", dpid)
            del self.datapaths[dpid]
            self.core.datapath_down(dpid)
            self._pending_barriers = {
                k: v for k, v in self._pending_barriers.items() if k[0] != dpid
            }

    @on_event(ofp_event.EventOFPBarrierReply, MAIN_DISPATCHER)
    def _barrier_reply(self, ev: Any) -> None:
        key = (ev.msg.datapath.id, ev.msg.xid)
        received_at = self._pending_barriers.pop(key, None)
        if received_at is not None:
            self.apply_latency_ms.append((time.monotonic() - received_at) * 1000.0)
            # The stats file shows the plan the switch has just acknowledged, not only
            # the one in force at the last counter poll.
            self._write_stats()

    @on_event(ofp_event.EventOFPErrorMsg, MAIN_DISPATCHER)
    def _error(self, ev: Any) -> None:
        msg = ev.msg
        LOG.error(
            "datapath %016x rejected a message: type %d code %d",
            msg.datapath.id,
            msg.type,
            msg.code,
        )

    @on_event(ofp_event.EventOFPMeterStatsReply, MAIN_DISPATCHER)
    def _meter_stats(self, ev: Any) -> None:
        msg = ev.msg
        dpid = msg.datapath.id
        samples = self._meter_replies.setdefault(dpid, [])
        for stat in msg.body:
            dropped = sum(b.byte_band_count for b in stat.band_stats)
            duration = stat.duration_sec + stat.duration_nsec / 1e9
            samples.append(MeterSample(stat.meter_id, stat.byte_in_count, dropped, duration))
        if msg.flags & msg.datapath.ofproto.OFPMPF_REPLY_MORE:
            return
        now = time.monotonic()
        rates = self.core.meter_stats(dpid, self._meter_replies.pop(dpid), now)
        previous = self._last_poll_reply.get(dpid)
        self._last_poll_reply[dpid] = now
        self._round_pending.discard(dpid)
        last_of_round = not (self._round_pending & set(self.datapaths))
        if rates and previous is not None and self.link is not None and self._service_connected:
            batch = telemetry_batch(dpid, rates, now - previous, time.time(), last_of_round)
            self.link.send_telemetry(batch)
        self._write_stats()

    @on_event(ofp_event.EventOFPPortStatsReply, MAIN_DISPATCHER)
    def _port_stats(self, ev: Any) -> None:
        dpid = ev.msg.datapath.id
        counters = {s.port_no: (s.rx_bytes, s.tx_bytes) for s in ev.msg.body}
        rates = port_rates(self._port_counters, dpid, counters, time.monotonic())
        self._port_rates.setdefault(dpid, {}).update(rates)

    # -- our own events -------------------------------------------------------------
    @on_event(EventTick)
    def _tick(self, ev: EventTick) -> None:
        self._send_all(self.core.tick(time.monotonic()), None)
        self._round_pending = set(self.datapaths)
        for dp in self.datapaths.values():
            for req in ofmsgs.stats_requests(dp):
                dp.send_msg(req)

    @on_event(EventLink)
    def _link(self, ev: EventLink) -> None:
        le = ev.link_event
        if le.kind == "connected":
            self._service_connected = True
            self.core.service_heard(le.received_at)
            LOG.info("service connected")
        elif le.kind == "lost":
            self._service_connected = False
            self.core.service_lost(le.received_at)
        elif le.kind == "policy":
            self.core.service_heard(le.received_at)
            try:
                policy = loads_policy(le.policy_yaml, f"<service policy v{le.version}>")
            except Exception as exc:
                LOG.error("ignoring policy v%d from the service: %s", le.version, exc)
                return
            if policy != self.core.policy:
                LOG.info("policy v%d (%s) from the service", le.version, policy.name)
                self._send_all(self.core.policy_received(policy, le.received_at), le.received_at)
        elif le.kind == "plan":
            try:
                per_dp = self.core.plan_received(le.rates, le.received_at, le.version)
            except ValueError as exc:
                LOG.error("ignoring plan v%d: %s", le.version, exc)
                return
            self._send_all(per_dp, le.received_at)
            if not per_dp:  # nothing changed: count it as applied at once
                self.apply_latency_ms.append((time.monotonic() - le.received_at) * 1000.0)
                self._write_stats()

    # -- reporting --------------------------------------------------------------------
    def _write_stats(self) -> None:
        """Write the state to ``stats_file`` as JSON (atomically), for tests and operators."""
        path = self.settings.stats_file
        if path is None:
            return
        now = time.monotonic()
        plan, source = self.core.keeper.current(now)
        totals = summed_rates(self.core.latest_rates)
        state = {
            "unix_time": time.time(),
            "plan_source": source.value,
            "plan_version": self.core.keeper.plan_version,
            "service_connected": self._service_connected,
            "plan_bps": {
                n: {d.value: plan.get((n, d)) for d in DIRECTIONS}
                for n in self.core.policy.slice_names
            },
            "datapaths": [f"{d:016x}" for d in self.core.datapath_ids],
            "meters": {
                f"{dpid:016x}": {
                    str(m.meter_id): {"rate_kbps": m.rate_kbps, "burst_kbits": m.burst_kbits}
                    for m in self.core.installed(dpid).meters.values()
                }
                for dpid in self.core.datapath_ids
            },
            "rates": {
                name: {
                    d.value: {"carried_bps": r.carried_bps, "offered_bps": r.offered_bps}
                    for (n, d), r in totals.items()
                    if n == name
                }
                for name in self.core.policy.slice_names
            },
            "ports": {
                f"{dpid:016x}": {
                    str(p): {"rx_bps": rx, "tx_bps": tx} for p, (rx, tx) in ports.items()
                }
                for dpid, ports in self._port_rates.items()
            },
            "apply_latency_ms": list(self.apply_latency_ms),
        }
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(state, indent=1))
        tmp.replace(path)
