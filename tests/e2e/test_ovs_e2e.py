"""End to end on a real Open vSwitch: plans become meters, meters hold the rates, fail-safes work.

Run by ``make e2e`` (``bash sims/ovs/e2e.sh``) as root. Host h1 is the core side
(iperf3 servers), h2 and h3 are UEs; uplink = UE -> h1, downlink = ``iperf3 -R``.
Rates: meters count Ethernet frames, iperf3 reports goodput (TCP ~4.5 %, UDP ~3 %
lower); "achieved" is iperf3's receiver goodput scaled to frames by the known header
sizes (``received_l2_bps``), and the plugin's per-slice rates count frames too.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from ovs_rig import (  # the module-scoped `rig` fixture lives there
    FALLBACK_AFTER_S,
    POLICY,
    SLICEAI,
    Rig,
    describe_intervals,
    iperf_result,
    l2_factor,
    received_l2_bps,
    rig,
    stop_process,
    wait_for,
)

from sliceai.controller.flows import meter_id
from sliceai.policy import DIRECTIONS, Direction, load_policy

pytestmark = pytest.mark.ovs

POLICY_OBJ = load_policy(POLICY)
DL, UL = Direction.DL, Direction.UL
TOLERANCE = 0.10
_version = iter(range(100, 10_000))
__all__ = ["rig"]  # re-exported fixture


def _plan(
    surgery: float, industrial: float, embb: float, best_effort: float = 20e6
) -> dict[tuple[str, Direction], float]:
    per = {
        "tele-surgery": surgery,
        "industrial": industrial,
        "embb": embb,
        "best-effort": best_effort,
    }
    return {(n, d): r for n, r in per.items() for d in DIRECTIONS}


def _expected_meters(rates: dict[tuple[str, Direction], float]) -> dict[int, int]:
    return {meter_id(POLICY_OBJ.slice_index(n), d): round(r / 1000) for (n, d), r in rates.items()}


def _apply(rig: Rig, rates: dict[tuple[str, Direction], float]) -> float:
    """Send a plan and wait until the switch holds its meters; returns when it was sent."""
    sent = rig.service.send_plan(rates, next(_version))
    want = _expected_meters(rates)
    wait_for(lambda: rig.switch_meters() == want, 5, f"meters {want}")
    return sent


@pytest.fixture(autouse=True)
def _stop_clients(rig: Rig) -> Iterator[None]:
    """A failed test leaves iperf3 clients running: stop them before the next test."""
    yield
    rig.stop_clients()


def _within(value: float, target: float, what: str) -> None:
    assert abs(value - target) <= TOLERANCE * target, (
        f"{what}: {value / 1e6:.2f} Mbit/s is not within 10 % of {target / 1e6:.2f} Mbit/s"
    )


def test_switch_meters_are_those_of_the_plan(rig: Rig) -> None:
    rates = _plan(6e6, 20e6, 30e6)
    rig.service.send_plan(rates, next(_version))
    want = _expected_meters(rates)
    got = wait_for(lambda: (m := rig.switch_meters()) == want and m, 5, "the plan's meters")
    assert got == want
    state = wait_for(lambda: (s := rig.stats()).get("plan_source") == "service" and s, 5, "stats")
    assert state["plan_bps"]["industrial"] == {"dl": 20e6, "ul": 20e6}


def test_each_slice_gets_its_allocation_and_the_plugin_reports_it(rig: Rig) -> None:
    rates = _plan(surgery=6e6, industrial=20e6, embb=30e6)
    _apply(rig, rates)
    seconds = 8
    flows = {
        # UDP offered at twice its allocation: the meter must cut it to the allocation.
        ("tele-surgery", UL): rig.iperf(
            2, "tele-surgery", seconds, "-u", "-b", "12M", "-l", "1400"
        ),
        # TCP, two streams each: a single stream that loses a whole window to the policer
        # stalls for a retransmission timeout (>= 200 ms), which cost one CI run 13 % of
        # its 4 measured seconds; with two, the other stream takes up the meter's rate.
        ("industrial", UL): rig.iperf(3, "industrial", seconds, "-P", "2"),
        ("embb", DL): rig.iperf(2, "embb", seconds, "-R", "-P", "2"),
    }
    time.sleep(3.0)  # past iperf3's omitted seconds
    reported: dict[tuple[str, Direction], list[float]] = {k: [] for k in flows}
    last_time = 0.0
    end = time.monotonic() + seconds - 1.5
    while time.monotonic() < end:
        state = rig.stats()
        if state.get("unix_time", 0) != last_time:
            last_time = state["unix_time"]
            for name, d in flows:
                reported[(name, d)].append(state["rates"][name][d.value]["carried_bps"])
        time.sleep(0.2)
    for (name, d), proc in flows.items():
        result = iperf_result(proc)
        achieved = received_l2_bps(result)
        _within(
            achieved,
            rates[(name, d)],
            f"{name} {d.value} achieved (iperf3; {describe_intervals(result)})",
        )
        samples = reported[(name, d)]
        assert len(samples) >= 3, f"{name}: only {len(samples)} plugin reports"
        _within(
            sum(samples) / len(samples),
            achieved,
            f"{name} {d.value} reported by the plugin vs iperf3",
        )


@pytest.mark.parametrize(("before", "after"), [(8e6, 3e6), (3e6, 7e6)])
def test_new_rate_holds_within_two_seconds_of_a_plan_change(
    rig: Rig, before: float, after: float
) -> None:
    # UDP offered above both rates: what arrives is exactly what the meter lets through
    # (a TCP flow's own recovery after a cut would blur the meter's reaction time).
    _apply(rig, _plan(before, 20e6, 30e6))
    # -R: h1 sends (downlink), so the client's interval reports are receiver-side.
    proc = rig.iperf(2, "tele-surgery", 8, "-u", "-b", "10M", "-l", "1400", "-i", "0.5", "-R")
    started = time.monotonic()
    time.sleep(4.5)
    changed_at = rig.service.send_plan(_plan(after, 20e6, 30e6), next(_version))
    result = iperf_result(proc)
    # iperf3 interval times restart after the 2 omitted seconds; connection set-up makes
    # them a bit late, so "2 s after the change" below errs on the strict side.
    series = [
        (
            started + 2.0 + iv["sum"]["start"] - changed_at,
            iv["sum"]["bits_per_second"] * l2_factor(result),
        )
        for iv in result["intervals"]
        if not iv["sum"].get("omitted")
    ]
    later = [bps for t, bps in series if t >= 2.0]
    shown = ", ".join(f"{t:+.1f}s {bps / 1e6:.2f}" for t, bps in series)
    assert len(later) >= 3, f"only {len(later)} intervals 2 s after the change: {shown}"
    for bps in later:
        _within(
            bps, after, f"tele-surgery 2 s after the change to {after / 1e6:g} Mbit/s ({shown})"
        )
    sl = POLICY_OBJ.slice_index("tele-surgery")
    assert rig.switch_meters()[meter_id(sl, DL)] == round(after / 1000)


def test_switch_reconnect_reinstalls_lost_state(rig: Rig) -> None:
    rates = _plan(6e6, 20e6, 30e6)
    _apply(rig, rates)
    n_flows = len(rig.testbed.ofctl("dump-flows", rig.testbed.bridge).splitlines())
    # The switch loses its state (as after a restart) and connects again.
    rig.testbed.ofctl("del-flows", rig.testbed.bridge)
    rig.testbed.ofctl("del-meters", rig.testbed.bridge)
    assert rig.switch_meters() == {}
    rig.testbed.reconnect()
    wait_for(lambda: rig.switch_meters() == _expected_meters(rates), 15, "meters after reconnect")
    wait_for(
        lambda: len(rig.testbed.ofctl("dump-flows", rig.testbed.bridge).splitlines()) == n_flows,
        5,
        "flows after reconnect",
    )
    proc = rig.iperf(2, "tele-surgery", 3, "-u", "-b", "12M", "-l", "1400")
    _within(received_l2_bps(iperf_result(proc)), 6e6, "tele-surgery after the reconnect")


def test_service_killed_plan_kept_then_guarantees_only(rig: Rig) -> None:
    rates = _plan(6e6, 20e6, 30e6)
    _apply(rig, rates)
    rig.service.stop()
    try:
        lost_at = time.monotonic()
        wait_for(lambda: rig.stats().get("plan_source") == "last-plan", 3, "plan_source last-plan")
        assert rig.switch_meters() == _expected_meters(rates)
        guarantees = {
            (s.name, d): s.guaranteed_bps(d) for s in POLICY_OBJ.slices for d in DIRECTIONS
        }
        wait_for(
            lambda: rig.switch_meters() == _expected_meters(guarantees),
            FALLBACK_AFTER_S + 4,
            "fallback meters",
        )
        assert time.monotonic() - lost_at >= FALLBACK_AFTER_S - 1.0, (
            "fell back before --fallback-after"
        )
        wait_for(lambda: rig.stats().get("plan_source") == "fallback", 3, "plan_source fallback")
        # Still enforced: tele-surgery UDP offered 10 Mbit/s gets its 4 Mbit/s guarantee.
        proc = rig.iperf(2, "tele-surgery", 4, "-u", "-b", "10M", "-l", "1400")
        _within(
            received_l2_bps(iperf_result(proc)),
            guarantees[("tele-surgery", UL)],
            "tele-surgery in fallback",
        )
    finally:
        rig.service.start()  # same port: the plugin reconnects
    wait_for(lambda: rig.stats().get("service_connected"), 10, "the plugin to reconnect")


def _meters_of_reported_plan(rig: Rig) -> dict[int, int]:
    return {
        meter_id(POLICY_OBJ.slice_index(n), Direction(d)): max(1, round(v / 1000))
        for n, per in rig.stats()["plan_bps"].items()
        for d, v in per.items()
        if v is not None
    }


def _switch_matches_a_reported_plan(rig: Rig) -> bool:
    before = _meters_of_reported_plan(rig)
    switch = rig.switch_meters()
    return switch in (before, _meters_of_reported_plan(rig))


def test_real_sliceai_service_drives_the_meters(rig: Rig) -> None:
    """`sliceai serve` on the plugin's service address: its plans reach the switch."""
    rig.service.stop()
    wait_for(
        lambda: rig.stats().get("service_connected") is False, 10, "the plugin to see the loss"
    )
    log = rig.tmp / "sliceai-serve.log"
    with open(log, "wb") as fh:
        serve = subprocess.Popen(
            [
                *SLICEAI,
                "serve",
                "--policy",
                str(POLICY),
                "--listen",
                f"127.0.0.1:{rig.service_port}",
                "--model",
                "empirical",
                "--interval",
                "1s",
                "--db",
                str(rig.tmp / "serve.db"),
                "-v",
            ],
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(
            lambda: serve.poll() is not None or rig.stats().get("service_connected"),
            60,
            "the plugin to connect to sliceai serve",
        )
        assert serve.poll() is None, f"sliceai serve exited: {log.read_text()[-2000:]}"
        first_version = rig.stats().get("plan_version")
        wait_for(
            lambda: (
                (s := rig.stats()).get("plan_source") == "service"
                and s.get("plan_version") != first_version
            ),
            15,
            "a new plan from sliceai serve",
        )
        proc = rig.iperf(3, "industrial", 3)
        iperf_result(proc)
        # The service plans up to twice a second: compare the switch with the plan the
        # plugin reported just before or just after reading it.
        wait_for(
            lambda: _switch_matches_a_reported_plan(rig),
            10,
            "switch meters to follow the service's plans",
        )
        assert rig.stats()["service_connected"], "the service ended the plugin's stream"
        stop_process(serve)
        wait_for(
            lambda: rig.stats().get("plan_source") == "last-plan",
            5,
            "last-plan after killing sliceai serve",
        )
    finally:
        stop_process(serve)
        print(log.read_text()[-3000:], file=sys.stderr)
        rig.service.start()
