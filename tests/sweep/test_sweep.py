"""sliceai sweep on a real local Ray (2 CPUs): results identical to replaying the cells one
after another, resume skips finished cells, a failing cell is recorded and the rest go on."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from sliceai.cli import main
from sliceai.policy import load_policy
from sliceai.policy.bundled import bundled_policy_path
from sliceai.replay import replay
from sliceai.traffic import generate, load_scenario, load_trace
from sliceai.traffic.readers import write_trace

pytestmark = [
    pytest.mark.scale,
    # Ray's start-up leaves files to /dev/null open (ResourceWarning, reported as unraisable)
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]
ray = pytest.importorskip("ray")
pq = pytest.importorskip("pyarrow.parquet")
cells_mod = pytest.importorskip("sliceai.sweep.cells")
runner = pytest.importorskip("sliceai.sweep.runner")

ALLOCATORS = ["static", "ewma", "rolling-quantile"]


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    runner.start_ray(None, 2)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], list[Path]]:
    root = tmp_path_factory.mktemp("inputs")
    scenario = load_scenario("campus")
    traces = []
    for seed, suffix in ((1, ".csv"), (2, ".parquet")):
        trace = generate(
            scenario, start=1_764_547_200.0, n_intervals=240, interval_s=10.0, seed=seed
        )
        traces.append(root / f"campus-{seed}{suffix}")
        write_trace(trace, traces[-1])
    campus = bundled_policy_path("campus.yaml")
    tight = root / "campus-tight.yaml"
    tight.write_text(campus.read_text().replace("campus", "campus-tight", 1))
    return traces, [campus, tight]


def _metrics(record: dict) -> dict:
    return record["report"]["allocators"][record["cell"]["allocator"]]


@pytest.mark.usefixtures("local_ray")
def test_a_sweep_on_ray_matches_sequential_replays_and_resumes(inputs, tmp_path: Path) -> None:
    traces, policies = inputs
    cells = cells_mod.plan_cells(traces, policies, ALLOCATORS)
    assert len(cells) == 12
    records, skipped = runner.run_sweep(cells, tmp_path)
    assert skipped == 0
    assert [r["status"] for r in records] == ["ok"] * 12
    # each cell equals sliceai.replay.replay of that cell in this process, bit for bit
    for cell, record in zip(cells, records, strict=True):
        policy = load_policy(cell.policy)
        trace = load_trace(cell.trace, slices=policy.slice_names)
        direct = replay(trace, policy, [cell.allocator]).allocators[cell.allocator].metrics
        assert _metrics(record) == json.loads(json.dumps(direct))
    # and the sequential runner gives the same records' metrics
    here = cells_mod.run_here(cells, tmp_path / "here")
    assert [_metrics(r) for r in here] == [_metrics(r) for r in records]
    # resume: nothing recomputed (files untouched), one deleted cell recomputed
    results = sorted((tmp_path / "cells").rglob("result.json"))
    assert len(results) == 12
    stamps = {p: p.stat().st_mtime_ns for p in results}
    again, skipped = runner.run_sweep(cells, tmp_path)
    assert skipped == 12
    assert {p: p.stat().st_mtime_ns for p in results} == stamps
    assert [_metrics(r) for r in again] == [_metrics(r) for r in records]
    results[0].unlink()
    _, skipped = runner.run_sweep(cells, tmp_path)
    assert skipped == 11
    assert results[0].exists()
    assert {p: p.stat().st_mtime_ns for p in results[1:]} == {p: stamps[p] for p in results[1:]}


@pytest.mark.usefixtures("local_ray")
def test_each_worker_loads_the_model_once_and_reads_each_trace_once(inputs, tmp_path) -> None:
    traces, policies = inputs
    cells = cells_mod.plan_cells(traces, policies, ["sliceai", "static"])
    stats: list[dict] = []
    records, _ = runner.run_sweep(cells, tmp_path / "ray", worker_stats=stats)
    assert [r["status"] for r in records] == ["ok"] * 8
    assert len(stats) == 2  # one worker per CPU of the local Ray
    assert len({s["pid"] for s in stats}) == 2
    assert sum(s["cells"] for s in stats) == 8
    # the model once per worker that ran a model cell, on one torch thread like the peer
    assert all(s["model_loads"] <= 1 for s in stats)
    assert sum(s["model_loads"] for s in stats) >= 1
    assert {s["torch_threads"] for s in stats if s["model_loads"]} == {1}
    # two traces, each kept once read: at most one read of each per worker
    assert all(s["trace_reads"] <= 2 for s in stats)
    # identical to the same cells one after another in this process (1 torch thread)
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        here = cells_mod.run_here(cells, tmp_path / "here")
        alone = cells_mod.run_cell(cells[0], tmp_path / "alone")  # a fresh runner, streamed
    finally:
        torch.set_num_threads(threads)
    assert [_metrics(r) for r in here] == [_metrics(r) for r in records]
    assert _metrics(alone) == _metrics(records[0])


def test_a_runner_reads_a_trace_once_unless_too_big_to_keep(inputs, tmp_path: Path) -> None:
    traces, policies = inputs
    cells = cells_mod.plan_cells(traces[:1], policies, ["static", "ewma"])
    kept, streamed = cells_mod.CellRunner(), cells_mod.CellRunner(max_trace_bytes=1000)
    a = [kept.run(c, tmp_path / "kept") for c in cells]
    b = [streamed.run(c, tmp_path / "streamed") for c in cells]
    assert kept.stats()["trace_reads"] == 1
    assert streamed.stats()["trace_reads"] == 1 + 2 * 4  # one try to keep it, then 2 per cell
    assert [_metrics(r) for r in a] == [_metrics(r) for r in b]
    assert _metrics(cells_mod.run_cell(cells[1], tmp_path / "alone")) == _metrics(a[1])


@pytest.mark.usefixtures("local_ray")
def test_a_failing_cell_is_recorded_and_the_others_finish(inputs, tmp_path: Path) -> None:
    traces, policies = inputs
    hospital = bundled_policy_path("hospital.yaml")  # campus traces do not fit it
    cells = cells_mod.plan_cells(traces[:1], [policies[0], hospital], ["static", "ewma"])
    records, _ = runner.run_sweep(cells, tmp_path)
    status = {
        (c.policy_label, c.allocator): r["status"] for c, r in zip(cells, records, strict=True)
    }
    assert status == {
        ("campus", "static"): "ok",
        ("campus", "ewma"): "ok",
        ("hospital", "static"): "error",
        ("hospital", "ewma"): "error",
    }
    failed = records[2]
    assert "unknown slice" in failed["error"]
    assert (tmp_path / "cells" / cells[2].key / "error.json").exists()
    assert not (tmp_path / "cells" / cells[2].key / "result.json").exists()


@pytest.mark.usefixtures("local_ray")
def test_the_command_writes_one_table_and_a_summary(inputs, tmp_path: Path, capsys) -> None:
    traces, policies = inputs
    out = tmp_path / "out"
    argv = [
        "sweep",
        "--traces",
        str(traces[0].parent / "campus-[0-9]*"),
        "--policy",
        str(policies[0]),
        "--allocator",
        "static,ewma",
        "oracle",
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main(argv) == 0
    table = pq.read_table(out / "results.parquet").to_pylist()
    totals = [r for r in table if r["slice"] == "*"]
    assert len(totals) == 2 * 1 * 3
    assert {r["status"] for r in totals} == {"ok"}
    assert len(table) == 6 * (1 + 8)  # the total and the 8 campus slices per cell
    csv_lines = (out / "results.csv").read_text().splitlines()
    assert len(csv_lines) == len(table) + 1
    summary = (out / "summary.md").read_text()
    assert "| campus   | oracle" in summary
    assert (out / "sweep_cost.png").stat().st_size > 0
    # the oracle is the cheapest on both traces here: its cost / cheapest is 1
    oracle = [r for r in totals if r["allocator"] == "oracle"]
    static = [r for r in totals if r["allocator"] == "static"]
    assert all(o["cost"] <= s["cost"] for o, s in zip(oracle, static, strict=True))
    capsys.readouterr()
    assert main([*argv[:-1], "--no-progress"]) == 0
    assert "6 cell(s) already finished, skipped" in capsys.readouterr().err
    assert np.isfinite([r["cost"] for r in totals]).all()


def test_no_trace_matching_a_pattern_is_a_usage_error(tmp_path: Path, capsys) -> None:
    code = main(
        [
            "sweep",
            "--traces",
            str(tmp_path / "*.csv"),
            "--policy",
            str(bundled_policy_path("campus.yaml")),
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert code == 2
    assert f"sliceai sweep: no trace file matches '{tmp_path}/*.csv'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_a_sweep_runs_on_a_running_cluster_given_its_address(inputs, tmp_path: Path) -> None:
    # A real Ray head started apart (as `ray start --head` on a cluster's first node), with one
    # CPU so that its workers are told apart from a local Ray's two; the sweep in another
    # process connects to it and gets the sequential replay's figures.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ray_cli = Path(sys.executable).with_name("ray")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    temp = Path("/tmp") / f"ray-{os.getpid()}"  # Ray's socket paths must stay short
    head = subprocess.Popen(
        [
            str(ray_cli),
            "start",
            "--head",
            "--block",
            f"--port={port}",
            "--num-cpus=1",
            "--node-ip-address=127.0.0.1",
            "--include-dashboard=false",
            f"--temp-dir={temp}",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # the head's raylet and GCS: stopped with it below
    )
    try:
        traces, policies = inputs
        out = tmp_path / "out"
        argv = [
            sys.executable,
            "-m",
            "sliceai",
            "sweep",
            "--traces",
            str(traces[0]),
            "--policy",
            str(policies[0]),
            "--allocator",
            "static,ewma",
            "--out",
            str(out),
            "--address",
            f"127.0.0.1:{port}",
            "--no-progress",
            "--no-plots",
        ]
        deadline = time.monotonic() + 120
        while not _listening(port):  # the head's GCS takes a few seconds to listen
            assert head.poll() is None, "the Ray head exited"
            assert time.monotonic() < deadline, "the Ray head did not listen within 120 s"
            time.sleep(0.5)
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        assert f"2 cell(s) on 1 worker(s) of the Ray cluster at 127.0.0.1:{port}" in done.stderr
        table = pq.read_table(out / "results.parquet").to_pylist()
        totals = {r["allocator"]: r for r in table if r["slice"] == "*"}
        policy = load_policy(policies[0])
        trace = load_trace(traces[0], slices=policy.slice_names)
        direct = replay(trace, policy, ["static", "ewma"]).allocators
        for name in ("static", "ewma"):
            assert totals[name]["status"] == "ok"
            assert totals[name]["cost"] == direct[name].metrics["total"]["cost"]
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        head.wait(30)
        shutil.rmtree(temp, ignore_errors=True)


def _listening(port: int) -> bool:
    with socket.socket() as conn:
        return conn.connect_ex(("127.0.0.1", port)) == 0
