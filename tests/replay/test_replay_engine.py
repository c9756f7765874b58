"""The replay loop and its metrics: hand cases, the oracle bound, chunking, reproducibility."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sliceai.policy import load_policy, loads_policy
from sliceai.replay import ReplayError, ReplayOptions, allocator_names, replay
from sliceai.replay.allocators import StaticAllocator, policy_bounds
from sliceai.replay.engine import SeriesRecorder
from sliceai.replay.metrics import alpha_of
from sliceai.replay.report import comparison_table, report_json, write_json, write_plots
from sliceai.traffic import Trace

REPO = Path(__file__).resolve().parents[2]
CAMPUS = load_policy(REPO / "policies" / "campus.yaml")

ONE_SLICE = """
name: one
slices:
  - name: s
    snssai: {sst: 1}
    five_qi: 9            # PDB 300 ms, PER 1e-6
    latency_budget: 100 ms
    priority: 32
    default: true
topology:
  links:
    - {name: l, capacity: 100 Mbps, slices: [s]}
"""


class Fixed(StaticAllocator):
    """Replays a given allocation (bit/s, ``(n, 1, 2)``), chunk by chunk."""

    name = "fixed"

    def __init__(self, rates: np.ndarray) -> None:
        self.rates = rates
        self.pos = 0

    def allocate_chunk(self, load: np.ndarray) -> np.ndarray:
        out = self.rates[self.pos : self.pos + load.shape[0]]
        self.pos += load.shape[0]
        return out


def _one_slice_trace(dl_bps: list[float]) -> Trace:
    load = np.zeros((len(dl_bps), 1, 2))
    load[:, 0, 0] = dl_bps
    return Trace(0.0, 1.0, ("s",), load)


def test_metrics_by_hand():
    policy = loads_policy(ONE_SLICE)
    # DL demand 10, 10, 12, 5 Mbit/s against a fixed 10 Mbit/s DL, 1 Mbit/s UL meter.
    trace = _one_slice_trace([10e6, 10e6, 12e6, 5e6])
    rates = np.zeros((4, 1, 2))
    rates[:, 0, 0] = 10e6
    rates[2:, 0, 1] = 1e6  # UL changes once (interval 2)
    # UL has no demand; counted as present, so the UL meter is charged as idle
    result = replay(trace, policy, [Fixed(rates)], demand_directions=(True, True))
    m = result.allocators["fixed"].metrics["slices"]["s"]
    # Interval 2: 2 Mbit queue; buffer = 2 x 100 ms x 10 Mbit/s = 2 Mbit: no loss, delay
    # 2 Mbit / 10 Mbit/s = 200 ms > 100 ms budget, and 2/12 unserved > 1 %: one violation.
    assert m["violation_rate"] == pytest.approx(0.25)
    assert m["violations_by_cause"] == {"shortfall": 0.25, "delay": 0.25, "loss": 0.0}
    assert m["unserved_bits"] == 0.0
    assert m["reconfigurations"] == 1
    served = 10e6 + 10e6 + 10e6 + 7e6
    allocated = 4 * 10e6 + 2 * 1e6
    assert m["overprovisioning"] == pytest.approx(allocated / served)
    over = 0 + 0 + 0 + 5e6 + 2 * 1e6  # DL idle in interval 3 plus the unused UL meter
    assert m["overprovisioned_bits"] == pytest.approx(over)
    assert m["cost"] == pytest.approx(over)  # nothing lost
    assert m["p99_delay_ms"] == pytest.approx(200, rel=0.03)
    assert m["p50_delay_ms"] == 0.0
    util = result.allocators["fixed"].metrics["total"]["link_utilisation"]["l"]
    assert util["dl"] == pytest.approx(served / 4 / 100e6)


def test_loss_is_weighted_by_priority_in_the_cost():
    policy = loads_policy(ONE_SLICE)
    trace = _one_slice_trace([30e6])
    rates = np.zeros((1, 1, 2))
    rates[0, 0, 0] = 10e6
    m = replay(trace, policy, [Fixed(rates)]).allocators["fixed"].metrics["slices"]["s"]
    # 30 Mbit arrive, 10 served, buffer 2 Mbit kept, 18 Mbit dropped.
    assert m["unserved_bits"] == pytest.approx(18e6)
    assert m["violations_by_cause"]["loss"] == 1.0
    assert m["alpha"] == alpha_of(32) == 4.0
    assert m["cost"] == pytest.approx(4.0 * 18e6)


def _feasible_trace(seed: int, n: int) -> Trace:
    """Random demand below every cap; the caps of campus fit both links."""
    rng = np.random.default_rng(seed)
    _, cap = policy_bounds(CAMPUS)
    top = np.where(np.isfinite(cap), cap, 1e8)
    burst = rng.random((n, len(CAMPUS.slices), 2)) < 0.1
    level = np.where(burst, rng.uniform(0.5, 1.0, burst.shape), rng.uniform(0, 0.4, burst.shape))
    return Trace(0.0, 1.0, CAMPUS.slice_names, top[np.newaxis] * level)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_oracle_is_never_beaten_on_cost(seed):
    result = replay(_feasible_trace(seed, 150), CAMPUS, list(allocator_names()))
    costs = {name: out.metrics["total"]["cost"] for name, out in result.allocators.items()}
    oracle = result.allocators["oracle"].metrics["total"]
    assert oracle["unserved_bits"] == 0.0
    assert oracle["violation_rate"] == 0.0
    for name, cost in costs.items():
        assert costs["oracle"] <= cost * (1 + 1e-9), (name, costs)


def test_results_do_not_depend_on_chunk_size_and_repeat_exactly():
    trace = _feasible_trace(7, 400)
    names = ["static", "proportional", "ewma"]
    a = report_json(replay(trace, CAMPUS, names, options=ReplayOptions(chunk_intervals=4096)))
    b = report_json(replay(trace, CAMPUS, names, options=ReplayOptions(chunk_intervals=33)))
    c = report_json(replay(trace, CAMPUS, names, options=ReplayOptions(chunk_intervals=4096)))
    assert a == c
    _assert_close(a, b)


def test_streamed_chunks_give_the_same_report_as_one_trace():
    trace = _feasible_trace(3, 200)
    whole = report_json(replay(trace, CAMPUS, ["ewma"]))
    streamed = report_json(replay(trace.chunks(64), CAMPUS, ["ewma"]))
    _assert_close(whole, streamed)


def _assert_close(a: object, b: object) -> None:
    """Equal reports up to float summation order."""
    if isinstance(a, dict) and isinstance(b, dict):
        assert set(a) == set(b)
        for key in a:
            _assert_close(a[key], b[key])
    elif isinstance(a, float) and isinstance(b, float):
        assert b == pytest.approx(a, rel=1e-9, abs=1e-6)
    else:
        assert a == b


def test_trace_slices_must_be_policy_slices():
    trace = Trace(0.0, 1.0, ("surgery-video", "mystery"), np.ones((3, 2, 2)))
    with pytest.raises(ReplayError, match="mystery"):
        replay(trace, CAMPUS, ["static"])


def test_missing_policy_slices_replay_as_idle():
    trace = Trace(0.0, 1.0, ("campus-embb",), np.full((5, 1, 2), 1e6))
    result = replay(trace, CAMPUS, ["static"])
    assert "surgery-video" in result.missing_slices
    assert result.allocators["static"].metrics["slices"]["surgery-video"]["served_bits"] == 0.0


def test_bad_allocator_output_is_reported():
    trace = _one_slice_trace([1e6, 1e6])
    with pytest.raises(ReplayError, match="shape"):
        replay(trace, loads_policy(ONE_SLICE), [Fixed(np.zeros((2, 3, 2)))])


def test_json_report_shape(tmp_path):
    result = replay(_feasible_trace(4, 60), CAMPUS, ["static", "oracle"], trace_name="t.csv")
    path = tmp_path / "r.json"
    write_json(result, path)
    data = json.loads(path.read_text())
    assert data["trace"] == "t.csv"
    assert data["policy"] == "campus"
    assert data["intervals"] == 60
    assert set(data["allocators"]) == {"static", "oracle"}
    keys = {
        "violation_rate",
        "unserved_bits",
        "p50_delay_ms",
        "p99_delay_ms",
        "overprovisioning",
        "reconfigurations",
        "cost",
    }
    for report in data["allocators"].values():
        assert keys <= set(report["total"])
        assert set(report["slices"]) == set(CAMPUS.slice_names)
        for metrics in report["slices"].values():
            assert keys <= set(metrics)
    text = comparison_table(result, per_slice=True)
    assert "oracle" in text
    assert "surgery-haptics" in text
    plots = write_plots(result, tmp_path / "plots")
    assert [p.name for p in plots] == [
        "allocation_dl.png",
        "allocation_ul.png",
        "violation_vs_overprovisioning.png",
    ]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in plots)


def test_series_recorder_keeps_block_means():
    rec = SeriesRecorder((1, 2), max_points=4)
    x = np.arange(100, dtype=float)[:, None, None] * np.ones((1, 1, 2))
    for i in range(0, 100, 7):
        rec.add(x[i : i + 7])
    first, means = rec.series()
    assert means.shape[0] <= 9
    # Each block's mean is the mean of the intervals it covers.
    block = int(first[1] - first[0])
    for k, f in enumerate(first):
        lo = int(f)
        hi = min(lo + block, 100)
        assert means[k, 0, 0] == pytest.approx(x[lo:hi, 0, 0].mean())


class Broken(StaticAllocator):
    name = "broken"

    def start(self, policy, trace_slices, interval_s, start_time):  # type: ignore[no-untyped-def]
        raise RuntimeError("model will not load")


def test_a_failing_plugin_is_left_out_only_when_asked(capsys):
    trace = _feasible_trace(5, 10)
    with pytest.raises(RuntimeError, match="will not load"):
        replay(trace, CAMPUS, [Broken(), "static"])
    result = replay(trace, CAMPUS, [Broken(), "static"], skip_failing=True)
    assert list(result.allocators) == ["static"]
    assert result.skipped_allocators == ("broken",)
    assert "allocator broken left out: model will not load" in capsys.readouterr().err


def test_missing_measurements_replay_as_no_traffic():
    load = _feasible_trace(8, 50).load_bps.copy()
    load[10:20, 2, 0] = np.nan
    trace = Trace(0.0, 1.0, CAMPUS.slice_names, load)
    result = replay(trace, CAMPUS, ["static", "proportional", "ewma", "oracle"])
    clean = load.copy()
    clean[10:20, 2, 0] = 0.0
    expected = replay(Trace(0.0, 1.0, CAMPUS.slice_names, clean), CAMPUS, ["oracle"])
    for out in result.allocators.values():
        assert np.isfinite(out.metrics["total"]["cost"])
    _assert_close(result.allocators["oracle"].metrics, expected.allocators["oracle"].metrics)


def test_the_replay_core_does_not_import_torch_or_grpc():
    code = (
        "import sys, sliceai.replay, sliceai.replay.report, sliceai.replay.commands;"
        "sys.exit(int(any(m in sys.modules for m in ('torch', 'grpc', 'os_ken'))))"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_chunks_must_be_consecutive():
    trace = _feasible_trace(6, 20)
    gap = [trace.window(0, 10), trace.window(12, 20)]
    with pytest.raises(ReplayError, match="not consecutive"):
        replay(gap, CAMPUS, ["static"])
