"""`sliceai client` against a live server: push a CSV trace, watch, grants, policy, health."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sliceai.api import commands
from sliceai.api.serve_command import default_db, limit_malloc_arenas
from sliceai.cli import main, run
from sliceai.engine import LOCAL_ADMIN


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="sliceai")
    commands.register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return run(args)


def test_client_commands_end_to_end(
    start_server: Callable[..., Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    running = start_server(interval_s=0.05)
    target = ["client", "--target", running.target]
    trace = tmp_path / "trace.csv"
    rows = ["timestamp,slice,direction,bps"]
    for k in range(4):
        rows += [f"{1000 + k}.0,consults,dl,{(k + 1) * 1e6}", f"{1000 + k}.0,consults,ul,5e5"]
    trace.write_text("\n".join(rows) + "\n")

    assert _run([*target, "push", str(trace), "--speed", "50", "--source-id", "csv-1"]) == 0
    assert "csv-1" in running.engine.buffer.sources()
    assert running.engine.hub.latest is not None

    assert _run([*target, "watch", "--count", "2", "--slices", "consults"]) == 0
    out = capsys.readouterr().out
    # one line per plan ("plan 5 (policy v1, ...)"); an explanation may say "last plan"
    assert sum(line.startswith("plan ") for line in out.splitlines()) == 2
    assert "consults" in out
    assert "vitals" not in out

    assert (
        _run([*target, "request", "--app", "app-7", "--slice", "consults", "--rate", "3 Mbps"]) == 0
    )
    allocation_id = capsys.readouterr().out.strip()
    assert [g.allocation_id for g in running.engine.grants(LOCAL_ADMIN)] == [allocation_id]
    assert _run([*target, "list"]) == 0
    assert "app-7" in capsys.readouterr().out
    assert _run([*target, "release", allocation_id]) == 0
    assert running.engine.grants(LOCAL_ADMIN) == []
    assert _run([*target, "release", allocation_id]) == 1
    assert "NOT_FOUND" in capsys.readouterr().err

    assert _run([*target, "health"]) == 0
    assert capsys.readouterr().out.strip() == "SERVING"
    assert _run([*target, "policy", "get"]) == 0
    assert "surgery-haptics" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nslices: []\n")
    assert _run([*target, "policy", "apply", str(bad)]) == 1
    assert "INVALID_ARGUMENT" in capsys.readouterr().err
    assert running.engine.policy_record.version == 1


def test_push_reports_a_rejected_trace(
    start_server: Callable[..., Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    running = start_server(interval_s=0.05)
    trace = tmp_path / "trace.csv"
    trace.write_text("timestamp,slice,direction,bps\n1000.0,not-a-slice,dl,1e6\n")
    argv = ["client", "--target", running.target, "push", str(trace), "--speed", "50"]
    assert _run([*argv, "--interval", "1s"]) == 1
    assert "NOT_FOUND" in capsys.readouterr().err


def test_serve_refuses_zero_torch_threads_before_touching_state(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "state.db"
    code = main(["serve", "--db", str(db), "--torch-threads", "0", "--listen", "127.0.0.1:0"])
    assert code == 2
    assert "--torch-threads must be at least 1" in capsys.readouterr().err
    assert not db.exists()


@pytest.mark.parametrize(
    ("flags", "why"),
    [
        (["--planner-nice", "-21"], "--planner-nice must be -20..19, got -21"),
        (["--planner-nice", "20"], "--planner-nice must be -20..19, got 20"),
        (["--planner-nice", "-5", "--no-planner-process"], "drop --no-planner-process"),
        (["--request-nice", "-1"], "--request-nice must be 0..19, got -1"),
    ],
)
def test_serve_refuses_bad_priorities_before_touching_state(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], why: str
) -> None:
    db = tmp_path / "state.db"
    assert main(["serve", "--db", str(db), *flags, "--listen", "127.0.0.1:0"]) == 2
    assert why in capsys.readouterr().err
    assert not db.exists()


def test_serve_keeps_its_state_under_xdg_state_home_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert default_db({"SLICEAI_DB": "/srv/s.db"}) == Path("/srv/s.db")
    assert default_db({"XDG_STATE_HOME": "/var/x"}) == Path("/var/x/sliceai/sliceai.db")
    assert default_db({}).parts[-4:] == (".local", "state", "sliceai", "sliceai.db")
    # Without --db, a serve that fails on a missing policy still made its state file
    # there, and nothing in the current directory.
    monkeypatch.delenv("SLICEAI_DB", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.chdir(tmp_path)
    code = main(["serve", "--model", "empirical", "--listen", "127.0.0.1:0"])
    assert code != 0
    assert (tmp_path / "state" / "sliceai" / "sliceai.db").exists()
    assert not (tmp_path / "sliceai.db").exists()


def test_serve_caps_the_malloc_arenas_unless_the_environment_says(monkeypatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert limit_malloc_arenas() is False  # the operator's setting stands
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    assert limit_malloc_arenas() is True  # glibc accepted M_ARENA_MAX
