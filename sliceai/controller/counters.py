"""Switch counters -> rates: port and meter byte counters to bit/s per slice and port.

Pure logic: times are passed in (``now``, seconds on any monotonic clock).

OpenFlow counters are unsigned 64-bit and only grow while the object lives. A
smaller reading than the last one is either a wrap (the old value was in the
top quarter of the range and the new one is small: the delta goes through 2**64)
or a reset (the meter was re-added, the switch restarted or reconnected; the
object's ``duration`` went backwards, if it is given). A reset gives no rate for
that period, only a new baseline; :meth:`CounterRates.forget` drops the baselines
of a datapath when it disconnects.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass

from sliceai.controller.flows import meter_id
from sliceai.policy.model import DIRECTIONS, Direction, Policy

COUNTER_MODULUS = 1 << 64
_WRAP_ZONE = 1 << 62


@dataclass(frozen=True)
class _Reading:
    value: int
    now: float
    duration_s: float | None


def counter_delta(old: int, new: int) -> int | None:
    """Increase from ``old`` to ``new`` of a 64-bit counter; None when it was reset."""
    if new >= old:
        return new - old
    if old >= COUNTER_MODULUS - _WRAP_ZONE and new < _WRAP_ZONE:
        return new + COUNTER_MODULUS - old
    return None


class CounterRates:
    """Per-key rate of monotonic counters (units of the counter per second)."""

    def __init__(self) -> None:
        self._last: dict[Hashable, _Reading] = {}

    def step(
        self, key: Hashable, value: int, now: float, duration_s: float | None = None
    ) -> tuple[int, float] | None:
        """Record a reading; returns (increase, seconds) since the previous one.

        None for the first reading, after a reset, or when the time did not advance.
        """
        if value < 0 or value >= COUNTER_MODULUS:
            raise ValueError(f"counter {key!r}: {value} is not a 64-bit unsigned value")
        prev = self._last.get(key)
        self._last[key] = _Reading(value, now, duration_s)
        if prev is None or now <= prev.now:
            return None
        if duration_s is not None and prev.duration_s is not None and duration_s < prev.duration_s:
            return None  # the object was re-created: new baseline
        delta = counter_delta(prev.value, value)
        if delta is None:
            return None
        return delta, now - prev.now

    def update(
        self, key: Hashable, value: int, now: float, duration_s: float | None = None
    ) -> float | None:
        """Record a reading; returns the rate (per second) since the previous one, or None."""
        got = self.step(key, value, now, duration_s)
        return None if got is None else got[0] / got[1]

    def forget(self, match: Hashable | None = None) -> None:
        """Drop baselines: all of them, or those whose key tuple starts with ``match``."""
        if match is None:
            self._last.clear()
            return
        for key in [k for k in self._last if isinstance(k, tuple) and k and k[0] == match]:
            del self._last[key]


@dataclass(frozen=True)
class MeterSample:
    """One meter's counters from a meter stats reply.

    ``byte_in_count``: bytes that reached the meter; ``band_bytes_dropped``: bytes
    its drop band discarded; ``duration_s``: the meter's age in seconds.
    """

    meter_id: int
    byte_in_count: int
    band_bytes_dropped: int
    duration_s: float | None = None


@dataclass(frozen=True)
class SliceRate:
    """A slice's measured rates in one direction, bit/s, and the bytes dropped in the period."""

    carried_bps: float
    offered_bps: float
    dropped_bytes: int


class SliceMeterRates:
    """Meter stats of one or more datapaths -> per slice per direction rates."""

    def __init__(self, policy: Policy) -> None:
        self._counters = CounterRates()
        self.set_policy(policy)

    def set_policy(self, policy: Policy) -> None:
        self._by_meter: dict[int, tuple[str, Direction]] = {
            meter_id(i, d): (sl.name, d) for i, sl in enumerate(policy.slices) for d in DIRECTIONS
        }
        self._counters.forget()

    def update(
        self, datapath_id: int, samples: Iterable[MeterSample], now: float
    ) -> dict[tuple[str, Direction], SliceRate]:
        """Rates since this datapath's previous reply; slices without a rate yet are left out."""
        out: dict[tuple[str, Direction], SliceRate] = {}
        for s in samples:
            owner = self._by_meter.get(s.meter_id)
            if owner is None:
                continue
            offered = self._counters.step(
                (datapath_id, s.meter_id, "in"), s.byte_in_count, now, s.duration_s
            )
            dropped = self._counters.step(
                (datapath_id, s.meter_id, "drop"), s.band_bytes_dropped, now, s.duration_s
            )
            if offered is None or dropped is None:
                continue
            (in_bytes, seconds), (dropped_bytes, _) = offered, dropped
            carried_bytes = max(0, in_bytes - dropped_bytes)
            out[owner] = SliceRate(
                8.0 * carried_bytes / seconds, 8.0 * in_bytes / seconds, dropped_bytes
            )
        return out

    def forget(self, datapath_id: int) -> None:
        """A datapath disconnected (or its meters were reinstalled): drop its baselines."""
        self._counters.forget(datapath_id)


def port_rates(
    counters: CounterRates, datapath_id: int, ports: Mapping[int, tuple[int, int]], now: float
) -> dict[int, tuple[float, float]]:
    """Port stats ``{port: (rx_bytes, tx_bytes)}`` -> ``{port: (rx_bps, tx_bps)}`` (bit/s)."""
    out: dict[int, tuple[float, float]] = {}
    for port, (rx, tx) in ports.items():
        rx_rate = counters.update((datapath_id, port, "rx"), rx, now)
        tx_rate = counters.update((datapath_id, port, "tx"), tx, now)
        if rx_rate is not None and tx_rate is not None:
            out[port] = (8.0 * rx_rate, 8.0 * tx_rate)
    return out
