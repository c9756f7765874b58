"""Counters -> rates: wrap, reset, reconnect, meter drops."""

from __future__ import annotations

import pytest

from sliceai.controller.counters import (
    COUNTER_MODULUS,
    CounterRates,
    MeterSample,
    SliceMeterRates,
    counter_delta,
    port_rates,
)
from sliceai.controller.flows import meter_id
from sliceai.policy import Direction, Policy


def test_counter_delta_wrap_and_reset() -> None:
    assert counter_delta(10, 25) == 15
    assert counter_delta(COUNTER_MODULUS - 100, 50) == 150  # wrapped through 2**64
    assert counter_delta(1_000_000, 10) is None  # reset


def test_rates_from_readings_with_wrap() -> None:
    rates = CounterRates()
    assert rates.update("k", COUNTER_MODULUS - 1000, now=10.0) is None
    assert rates.update("k", 1000, now=12.0) == pytest.approx(1000.0)


def test_reset_gives_no_rate_then_a_new_baseline() -> None:
    rates = CounterRates()
    rates.update("k", 5_000_000, now=0.0)
    assert rates.update("k", 100, now=1.0) is None
    assert rates.update("k", 600, now=2.0) == pytest.approx(500.0)


def test_duration_going_back_means_reset_even_when_value_grew() -> None:
    rates = CounterRates()
    rates.update("k", 100, now=0.0, duration_s=50.0)
    assert rates.update("k", 200, now=1.0, duration_s=0.5) is None


def test_time_not_advancing_and_bad_values() -> None:
    rates = CounterRates()
    rates.update("k", 1, now=5.0)
    assert rates.update("k", 2, now=5.0) is None
    with pytest.raises(ValueError, match="64-bit"):
        rates.update("k", -1, now=6.0)


def test_slice_rates_from_meter_stats(policy: Policy) -> None:
    rates = SliceMeterRates(policy)
    m = meter_id(1, Direction.UL)
    assert rates.update(7, [MeterSample(m, 1_000, 0, 1.0)], now=100.0) == {}
    got = rates.update(7, [MeterSample(m, 1_000 + 2_500_000, 500_000, 3.0)], now=102.0)
    r = got[("factory", Direction.UL)]
    assert r.offered_bps == pytest.approx(10e6)
    assert r.carried_bps == pytest.approx(8e6)
    assert r.dropped_bytes == 500_000


def test_reconnect_forgets_baselines_per_datapath(policy: Policy) -> None:
    rates = SliceMeterRates(policy)
    m = meter_id(0, Direction.DL)
    rates.update(1, [MeterSample(m, 10_000, 0)], now=0.0)
    rates.update(2, [MeterSample(m, 10_000, 0)], now=0.0)
    rates.forget(1)
    # datapath 1 came back with fresh counters: no rate (not a negative or huge one)
    assert rates.update(1, [MeterSample(m, 50, 0)], now=1.0) == {}
    assert rates.update(2, [MeterSample(m, 135_000, 0)], now=1.0)[
        ("surgery", Direction.DL)
    ].carried_bps == pytest.approx(1e6)


def test_unknown_meters_are_ignored(policy: Policy) -> None:
    rates = SliceMeterRates(policy)
    rates.update(1, [MeterSample(999, 1, 0)], now=0.0)
    assert rates.update(1, [MeterSample(999, 100, 0)], now=1.0) == {}


def test_port_rates() -> None:
    counters = CounterRates()
    assert port_rates(counters, 1, {1: (0, 0)}, now=0.0) == {}
    assert port_rates(counters, 1, {1: (125_000, 250_000)}, now=1.0) == {1: (1e6, 2e6)}
