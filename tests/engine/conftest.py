"""Shared fixtures of the engine tests: the hospital policy and engines built on fakes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sliceai.engine import Engine, EngineSettings, StateStore
from sliceai.planning import RollingQuantileForecaster

POLICY_PATH = Path(__file__).resolve().parents[2] / "policies" / "hospital.yaml"


@pytest.fixture
def policy_text() -> str:
    return POLICY_PATH.read_text(encoding="utf-8")


@pytest.fixture
def engine(tmp_path: Path, policy_text: str) -> Iterator[Engine]:
    """An engine on a fresh SQLite file; the loop thread is NOT started (call step())."""
    store = StateStore(tmp_path / "state.db")
    eng = Engine(
        store, policy_text, RollingQuantileForecaster(), settings=EngineSettings(interval_s=0.2)
    )
    yield eng
    eng.stop()
    store.close()
