"""Request threads yield the CPU: RPC handlers run at a higher nice value than the
control loop, so a flood of requests cannot take the CPU the plans need."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from sliceai.api.client import SliceaiClient
from sliceai.api.server import REQUEST_NICE, lower_priority
from sliceai.planning import RollingQuantileForecaster

pytestmark = pytest.mark.skipif(not hasattr(os, "getpriority"), reason="POSIX priorities")


def _nice() -> int:
    """The calling thread's nice value (Linux keeps one per thread)."""
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


class Recording(RollingQuantileForecaster):
    """Rolling quantiles that note the nice value of each thread that asks, by its name."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: dict[str, int] = {}

    def quantiles_at(self, *args, **kw):  # type: ignore[no-untyped-def]
        self.seen[threading.current_thread().name] = _nice()
        return super().quantiles_at(*args, **kw)


def test_lower_priority_touches_only_the_calling_thread() -> None:
    before = _nice()
    got: list[int] = []
    t = threading.Thread(target=lambda: (lower_priority(3), got.append(_nice())))
    t.start()
    t.join()
    assert got == [min(before + 3, 19)]
    assert _nice() == before  # this thread, and so the process's others, unchanged


def test_rpc_handlers_run_below_the_control_loop(
    start_server: Callable[..., Any],
) -> None:
    forecaster = Recording()
    running = start_server(forecaster=forecaster, request_nice=REQUEST_NICE)
    base = _nice()
    with SliceaiClient(running.target) as c:
        c.wait_serving()
        deadline = time.monotonic() + 30
        while "sliceai-loop" not in forecaster.seen:  # the loop's own plans
            assert time.monotonic() < deadline
            time.sleep(0.05)
        c.forecast(["consults"], horizon=2)
    handlers = {name: n for name, n in forecaster.seen.items() if name.startswith("grpc")}
    assert handlers, f"no RPC handler thread asked the forecaster: {forecaster.seen}"
    assert set(handlers.values()) == {min(base + REQUEST_NICE, 19)}
    assert forecaster.seen["sliceai-loop"] == base
