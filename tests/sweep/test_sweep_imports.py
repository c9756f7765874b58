"""Ray and pyarrow stay out of the pure core and of ``sliceai --help``; without them the
sweep command exits 2 naming the extra."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sliceai.cli import main

ROOT = Path(__file__).resolve().parents[2]
EXTRAS = {"ray", "pyarrow", "flwr"}


def _loaded(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys\nprint(' '.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return {name.partition(".")[0] for name in out.stdout.split()}


def test_the_pure_core_and_the_parser_import_no_extra() -> None:
    core = (
        "import sliceai.policy, sliceai.solver, sliceai.traffic, sliceai.planning, sliceai.replay"
    )
    assert not _loaded(core) & EXTRAS
    assert not _loaded("from sliceai.cli import build_parser\nbuild_parser()") & EXTRAS


def test_sweep_without_ray_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    monkeypatch.delitem(sys.modules, "sliceai.sweep.runner", raising=False)
    monkeypatch.delitem(sys.modules, "sliceai.sweep.sweep_command", raising=False)
    trace = tmp_path / "t.csv"
    trace.write_text("timestamp,slice,direction,bps\n")
    code = main(
        [
            "sweep",
            "--traces",
            str(trace),
            "--policy",
            "policies/campus.yaml",
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert code == 2
    # Ray, or pyarrow before it where the base install has neither: the extra is named.
    err = capsys.readouterr().err
    assert "is not installed: pip install 'sliceai[scale]'" in err
    assert "Traceback" not in err
