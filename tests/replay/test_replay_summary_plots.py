"""What a first-time user reads and looks at: absent directions, the short summary and
its sentences, and plots scaled by demand in distinct colours (issue #30)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sliceai.cli import main
from sliceai.policy import loads_policy
from sliceai.replay import replay
from sliceai.replay.allocators import static_rates
from sliceai.replay.plots import STYLE, _allocation_figure, time_axis, write_plots
from sliceai.replay.report import write_json
from sliceai.replay.summary import summary_table
from sliceai.traffic import Trace
from sliceai.traffic.longcsv import write_long_csv

POLICY = """\
name: two
slices:
  - name: control
    snssai: {sst: 2, sd: "000001"}
    five_qi: 82
    guaranteed: {dl: 2 Mbps, ul: 2 Mbps}
    maximum: {dl: 10 Mbps, ul: 10 Mbps}
    risk: 0.001
    match: [{protocol: udp, ports: [4000]}]
  - name: embb
    snssai: {sst: 1}
    five_qi: 9
    maximum: {dl: 400 Mbps, ul: 100 Mbps}
    risk: 0.1
    default: true
topology:
  links:
    - name: cell
      capacity: 500 Mbps
      slices: [control, embb]
"""
ALLOCATORS = ["static", "proportional", "ewma", "rolling-quantile", "oracle"]


def _trace(n: int = 240, *, uplink: bool = False, interval_s: float = 0.25) -> Trace:
    rng = np.random.default_rng(3)
    load = np.full((n, 2, 2), np.nan)
    load[:, 0, 0] = rng.uniform(0.5e6, 1.5e6, n)
    load[:, 1, 0] = rng.lognormal(np.log(30e6), 0.5, n)
    if uplink:
        load[:, :, 1] = load[:, :, 0] / 4
    return Trace(1.7e9, interval_s, ("control", "embb"), load)


@pytest.fixture
def policy():  # type: ignore[no-untyped-def]
    return loads_policy(POLICY)


def test_absent_direction_is_neither_reserved_nor_charged(policy) -> None:  # type: ignore[no-untyped-def]
    dl_only = replay(_trace(), policy, ALLOCATORS)
    assert dl_only.absent_directions == ("ul",)
    for name, out in dl_only.allocators.items():
        assert (out.allocation_bps[:, :, 1] == 0).all(), name
    # static's cost is its idle DL reservation only: (static DL - demand)+ over the trace
    static = static_rates(policy)[:, 0]
    demand = _trace().load_bps[:, :, 0]
    idle = np.maximum(static[None, :] - demand, 0).sum() * 0.25
    cost = dl_only.allocators["static"].metrics["total"]["cost"]
    assert cost == pytest.approx(idle, rel=1e-9)
    both = replay(_trace(uplink=True), policy, ["static"])
    assert both.absent_directions == ()
    assert (both.allocators["static"].allocation_bps[:, :, 1] > 0).all()


def test_json_and_summary_say_which_directions_were_absent(policy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = replay(_trace(), policy, ALLOCATORS)
    write_json(result, tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text())["absent_directions"] == ["ul"]
    assert "UL: no demand anywhere in the trace" in summary_table(result, policy)


def test_summary_is_one_row_per_allocator_with_its_sentences(policy) -> None:  # type: ignore[no-untyped-def]
    result = replay(_trace(uplink=True), policy, ALLOCATORS)
    text = summary_table(result, policy)
    table = text.split("\n\n")[1].splitlines()[2:]
    assert [row.split()[0] for row in table] == ALLOCATORS
    assert table[-1].split()[1] == "x1.00"  # the oracle is the reference for cost
    assert "oracle: allocates each interval knowing its demand" in text
    # the best-effort slice's violations get their explanation, with its risk
    joined = " ".join(text.split())
    assert "embb has no guaranteed rate (best effort) and accepts a 10% risk" in joined
    assert "control" not in text.split("\n\n")[1]  # no per-slice rows


def test_replay_cli_prints_per_slice_rows_only_when_verbose(policy, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    trace, pol = tmp_path / "t.csv", tmp_path / "p.yaml"
    write_long_csv(_trace(), trace)
    pol.write_text(POLICY)
    argv = ["replay", str(trace), "--policy", str(pol), "--allocator", "static,oracle"]
    assert main([*argv, "--no-progress", "--report", str(tmp_path / "r")]) == 0
    short = capsys.readouterr().out
    assert "servable viol %" not in short
    assert "UL: no demand" in short
    assert not (tmp_path / "r" / "allocation_ul.png").exists()  # nothing to show there
    assert (tmp_path / "r" / "allocation_dl.png").is_file()
    assert main([*argv, "--no-progress", "--verbose"]) == 0
    assert "servable viol %" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("seconds", "unit"), [(240, "s"), (3600, "min"), (3 * 86400, "h"), (14 * 86400, "days")]
)
def test_time_axis_fits_the_trace(seconds: float, unit: str) -> None:
    assert time_axis(seconds)[1] == unit


def test_allocators_have_distinct_colours_and_markers() -> None:
    colours = [c for c, _, _ in STYLE.values()]
    markers = [m for _, _, m in STYLE.values()]
    assert len(set(colours)) == len(colours)
    assert len(set(markers)) == len(markers)
    assert STYLE["sliceai"][0] != STYLE["rolling-quantile"][0]


def test_panels_are_scaled_by_demand_and_list_what_is_above(policy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    result = replay(_trace(), policy, ALLOCATORS)
    fig = _allocation_figure(plt, result, 0, policy)
    embb = fig.axes[1]
    demand = result.demand_bps[:, 1, 0]
    top = embb.get_ylim()[1] * 1e6  # Mbit/s
    assert top == pytest.approx(1.3 * np.percentile(demand, 99.5))
    notes = " ".join(t.get_text() for t in embb.texts)
    assert "static" in notes  # static's ~hundreds of Mbit/s are listed, not drawn
    assert fig.axes[0].get_xlabel() == ""
    assert embb.get_xlabel() == "time since start (s)"  # a 1-minute trace in seconds
    plt.close(fig)
    paths = write_plots(result, tmp_path, policy)
    assert {p.name for p in paths} == {"allocation_dl.png", "violation_vs_overprovisioning.png"}
    assert all(p.stat().st_size < 150_000 for p in paths)
