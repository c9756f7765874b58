"""Without pyarrow (the base install) a Parquet trace is a clear error naming the extra."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from sliceai.cli import main
from sliceai.plugins import MissingDependency
from sliceai.traffic import open_trace


@pytest.fixture
def no_pyarrow(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow now fails
    monkeypatch.delitem(sys.modules, "sliceai.traffic.parquet", raising=False)


@pytest.mark.usefixtures("no_pyarrow")
def test_reading_parquet_without_pyarrow_names_the_extra(tmp_path: Path) -> None:
    with pytest.raises(MissingDependency, match=r"pip install 'sliceai\[scale\]'"):
        open_trace(tmp_path / "t.parquet")


@pytest.mark.usefixtures("no_pyarrow")
def test_sim_to_parquet_without_pyarrow_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "c.parquet"
    code = main(["sim", "campus", "--days", "0.01", "--interval", "60s", "-o", str(out)])
    assert code == 2
    assert "pyarrow is not installed: pip install 'sliceai[scale]'" in capsys.readouterr().err
    assert not out.exists()
