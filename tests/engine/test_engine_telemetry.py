"""Telemetry validation, merging over sources, staleness and end-of-period triggering."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sliceai.engine import Exhausted, InvalidInput, NotFound
from sliceai.engine.clock import ManualClock
from sliceai.engine.telemetry import (
    MAX_BATCH_SLICES,
    MAX_RATE_BPS,
    TelemetryBuffer,
    check_rates,
    check_time,
)
from sliceai.planning import RollingQuantileForecaster

NAMES = ("a", "b", "c")


def _arr(*v: float) -> np.ndarray:
    return np.array(v, dtype=np.float64)


def test_latest_rates_merge_by_max_over_sources() -> None:
    buf = TelemetryBuffer(NAMES, stale_after_s=60)
    buf.ingest("s1", ["a", "b"], _arr(1e6, 2e6), _arr(10, 20))
    buf.ingest("s2", ["b", "c"], _arr(5e6, 3e6), _arr(5, 30))
    tel = buf.collect()
    np.testing.assert_array_equal(tel.measured_bps, [[1e6, 10], [5e6, 20], [3e6, 30]])
    assert tel.live_sources == 2
    assert tel.samples == 4


def test_a_slice_named_twice_in_a_batch_is_summed() -> None:
    buf = TelemetryBuffer(NAMES, stale_after_s=60)
    buf.ingest("s1", ["a", "a", "b"], _arr(1, 2, 4), _arr(10, 20, 40))
    tel = buf.collect()
    np.testing.assert_array_equal(tel.measured_bps[:2], [[3, 30], [4, 40]])
    assert np.isnan(tel.measured_bps[2]).all()


@pytest.mark.parametrize(
    ("dl", "error"),
    [
        (_arr(-1.0), InvalidInput),
        (_arr(np.nan), InvalidInput),
        (_arr(np.inf), InvalidInput),
        (_arr(1e14), InvalidInput),
    ],
)
def test_bad_rates_are_refused_and_change_nothing(dl: np.ndarray, error: type[Exception]) -> None:
    buf = TelemetryBuffer(NAMES, stale_after_s=60)
    buf.ingest("s1", ["a"], _arr(7.0), _arr(7.0))
    with pytest.raises(error):
        buf.ingest("s1", ["a"], dl, _arr(1.0))
    assert buf.collect().measured_bps[0].tolist() == [7.0, 7.0]


def test_unknown_slice_is_not_found_and_changes_nothing() -> None:
    buf = TelemetryBuffer(NAMES, stale_after_s=60)
    with pytest.raises(NotFound, match="nope"):
        buf.ingest("s1", ["a", "nope"], _arr(1, 2), _arr(1, 2))
    assert buf.sources() == {}


def test_oversized_and_ragged_batches() -> None:
    buf = TelemetryBuffer(NAMES, stale_after_s=60)
    n = MAX_BATCH_SLICES + 1
    with pytest.raises(Exhausted):
        buf.ingest("s1", ["a"] * n, np.zeros(n), np.zeros(n))
    with pytest.raises(InvalidInput, match="length"):
        buf.ingest("s1", ["a", "b"], _arr(1), _arr(1, 2))


def test_timestamps_far_off_and_bad_periods_are_refused() -> None:
    now = time.time()
    check_time(now - 10, 1.0, now)
    for ts, period in [(now - 301, 1.0), (now + 301, 1.0), (np.nan, 1.0), (now, 0.0), (now, 901.0)]:
        with pytest.raises(InvalidInput):
            check_time(ts, period, now)


def test_silent_source_goes_stale_and_its_slices_are_flagged() -> None:
    clock = ManualClock()
    buf = TelemetryBuffer(NAMES, stale_after_s=0.05, clock=clock.clock)
    buf.ingest("quiet", ["a"], _arr(1), _arr(1))
    buf.ingest("chatty", ["b"], _arr(2), _arr(2))
    clock.advance(0.05)
    assert buf.collect().stale_sources == ()  # stale only once past 0.05 s
    clock.advance(0.001)
    buf.ingest("chatty", ["b"], _arr(3), _arr(3))
    tel = buf.collect()
    assert tel.stale_sources == ("quiet",)
    assert tel.stale_slices.tolist() == [True, False, False]
    assert np.isnan(tel.measured_bps[0]).all()
    assert tel.measured_bps[1].tolist() == [3, 3]


def test_period_completes_when_every_live_source_ended_it() -> None:
    buf = TelemetryBuffer(NAMES, stale_after_s=60)
    buf.ingest("s1", ["a"], _arr(1), _arr(1), end_of_period=False)
    buf.ingest("s2", ["b"], _arr(1), _arr(1), end_of_period=False)
    buf.collect()
    buf.ingest("s1", ["a"], _arr(1), _arr(1), end_of_period=True)
    buf.ingest("s2", ["b"], _arr(1), _arr(1), end_of_period=False)
    assert not buf.period_complete.is_set()
    buf.ingest("s2", ["c"], _arr(1), _arr(1), end_of_period=True)
    assert buf.period_complete.is_set()
    assert buf.collect().trigger_time is not None
    assert not buf.period_complete.is_set()


def test_rebind_keeps_rates_of_slices_that_stay() -> None:
    buf = TelemetryBuffer(NAMES, stale_after_s=60)
    buf.ingest("s1", ["a", "c"], _arr(1, 3), _arr(1, 3))
    buf.rebind(("c", "d"))
    tel = buf.collect()
    assert tel.measured_bps[0].tolist() == [3, 3]
    assert np.isnan(tel.measured_bps[1]).all()
    with pytest.raises(NotFound):
        buf.ingest("s1", ["a"], _arr(1), _arr(1))


def test_slice_ids_index_the_stream_table() -> None:
    buf = TelemetryBuffer(NAMES, stale_after_s=60)
    table = ("c", "a", "retired-slice")
    buf.ingest("s1", np.array([0, 1, 1]), _arr(3, 1, 2), _arr(30, 10, 20), table=table)
    tel = buf.collect()
    np.testing.assert_array_equal(tel.measured_bps[[0, 2]], [[3, 30], [3, 30]])
    with pytest.raises(InvalidInput, match="slice_table"):
        buf.ingest("s1", np.array([3]), _arr(1), _arr(1), table=table)
    with pytest.raises(InvalidInput, match="slice_table"):
        buf.ingest("s1", np.array([-1]), _arr(1), _arr(1), table=table)
    with pytest.raises(NotFound, match="retired-slice"):
        buf.ingest("s1", np.array([0, 2]), _arr(1, 1), _arr(1, 1), table=table)
    assert buf.collect().measured_bps[0].tolist() == [3, 30]


@settings(max_examples=300, deadline=None)
@given(
    values=st.lists(
        st.one_of(
            st.floats(width=64),
            st.sampled_from(
                [
                    0.0,
                    -0.0,
                    2.0**33,
                    np.nextafter(2.0**33, 0),
                    MAX_RATE_BPS,
                    np.nextafter(MAX_RATE_BPS, np.inf),
                ]
            ),
        ),
        max_size=8,
    )
)
def test_rate_check_accepts_exactly_finite_rates_up_to_the_limit(values: list[float]) -> None:
    arr = np.array(values, dtype=np.float64)
    ok = all(0 <= v <= MAX_RATE_BPS for v in values)  # False for NaN; True for -0.0
    if ok:
        check_rates("dl_bps", arr)
    else:
        with pytest.raises(InvalidInput, match="dl_bps"):
            check_rates("dl_bps", arr)


@pytest.mark.parametrize(
    ("table", "ids"),
    [
        (("a", "b", "c"), [0, 1, 2]),  # policy order: stored through a slice
        (("x", "b", "c"), [1, 2]),
        (("c", "b", "a"), [0, 1, 2]),  # reversed: an index array
        (("a", "b", "c"), [2, 0]),
        (("a", "b", "c"), [1, 1, 2]),  # summed duplicates
        (("a", "b", "c"), [0, 2]),
    ],
)
def test_table_ids_store_the_same_whatever_the_layout(
    table: tuple[str, ...], ids: list[int]
) -> None:
    buf = TelemetryBuffer(NAMES, stale_after_s=60)
    dl = _arr(*(10.0 * (k + 1) for k in range(len(ids))))
    for _ in range(2):  # the second time from the cache
        buf.ingest("s1", np.array(ids, dtype=np.int64), dl, dl / 10, table=table)
        want = np.full((3, 2), np.nan)
        for i, v in zip(ids, dl, strict=True):
            row = NAMES.index(table[i])
            want[row] = np.nan_to_num(want[row]) + np.array([v, v / 10])
        np.testing.assert_array_equal(buf.collect().measured_bps, want)


def test_table_errors_are_raised_every_time() -> None:
    buf = TelemetryBuffer(NAMES, stale_after_s=60)
    table = ("a", "gone")
    for _ in range(2):
        with pytest.raises(NotFound):
            buf.ingest("s1", np.array([0, 1]), _arr(1, 1), _arr(1, 1), table=table)
        with pytest.raises(InvalidInput):
            buf.ingest("s1", np.array([0, 2]), _arr(1, 1), _arr(1, 1), table=table)
    assert buf.sources() == {}


def test_table_cache_memory_is_bounded() -> None:
    buf = TelemetryBuffer(NAMES, stale_after_s=60)
    indexer = buf._indexer
    table = ("a", "b", "c")
    rng = np.random.default_rng(0)
    for _ in range(3000):
        ids = rng.integers(0, 3, size=400).astype(np.int64)
        _, dups = indexer.from_table(table, ids)
        assert dups == (len(set(ids.tolist())) != len(ids))
        assert indexer._cached_bytes <= 16 << 20


@settings(max_examples=60, deadline=None)
@given(
    data=st.lists(
        st.lists(st.one_of(st.none(), st.floats(0, 1e10)), min_size=1, max_size=40),
        min_size=1,
        max_size=8,
    ),
    levels=st.lists(st.floats(0.001, 0.999), min_size=1, max_size=6, unique=True),
)
def test_rolling_quantiles_with_gaps_are_numpys_nanquantile(
    data: list[list[float | None]], levels: list[float]
) -> None:
    width = max(len(r) for r in data)
    rows = np.full((len(data), width), np.nan)
    for i, r in enumerate(data):
        rows[i, : len(r)] = [np.nan if v is None else v for v in r]
    q = np.array(sorted(levels))
    got = RollingQuantileForecaster(window=width).quantiles(rows, q, 0.0, 1.0)[:, 0]
    some = ~np.isnan(rows).all(axis=1)
    want = np.zeros_like(got)
    if some.any():
        want[some] = np.nanquantile(rows[some], q, axis=1).T
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-6)
