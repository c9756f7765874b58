"""The planner in its own process, out of reach of the request threads.

``sliceai serve`` answers every RPC on gRPC threads that share one interpreter lock
with everything else in the server process. Under a flood of requests, refused or not,
a plan's forecast and solve (tens of milliseconds of Python and numpy) waited for
those threads: decision p99 189 ms at 64 slices under the soak's hostile load against
about 40 ms unloaded (``make soak``, 3 minutes, 2 cores). So ``serve`` plans in a child
process with its own interpreter and its own copy of the forecaster
(:class:`PlannerProcess`); the server process keeps the telemetry, the grants and the
policy, sends each interval's history to the child and mirrors back what the child
learnt.

- :class:`RemotePlanner` stands in for a policy's :class:`~sliceai.planning.Planner`
  in the engine. It keeps a *local* planner of the same policy in the server process;
  after every interval the child's state (risk control, queue behind each meter, plan
  in force: :meth:`Planner.snapshot`) and the forecaster's online state (a pool's
  weights) are copied into the local one, so saving the risk state, ``GetForecast``'s
  weights and a restarted child all read the same state as in one process. The child
  sends that state in a second message after the plan, and the engine mirrors it once the
  plan is published (:meth:`RemotePlanner.settle`): the plan does not wait for it. The child
  plans exactly as the local planner would (same code, same inputs, same state): rates
  agree interval by interval (tests/engine/test_engine_planner_process.py).
- When the child does not answer within ``timeout_s``, dies or fails, the interval is
  planned by the local planner in the server process (the plan's explanation says so)
  and the child is restarted in the background; it takes over the mirrored state on its
  first interval.
- The child always solves with :class:`~sliceai.solver.SliceSolver` (an ``Engine``'s
  injected solver factory is for in-process tests) and reads time from its own clock.
- A pooled forecaster's member swapped in by ``serve --adapt`` reaches the child too
  (:meth:`PlannerProcess.swap_member`).
- ``nice`` (``serve --planner-nice``) sets the child's priority, in every child started.
  Under the soak's request flood a child at the server's priority waited for the CPU
  about 5 ms of each plan's 20 at the median and 15 ms at p99; at nice -10, 1.2 and 5 ms.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from sliceai.planning import (
    Forecast,
    Forecaster,
    Planner,
    PlanStep,
    PooledForecaster,
    RollingQuantileForecaster,
    load_forecaster,
)
from sliceai.planning.forecasters import FloatArray

log = logging.getLogger(__name__)

#: Seconds the child may take to build its forecaster (torch and the model load there).
START_TIMEOUT_S = 180.0
#: Seconds between attempts to restart a child that died or hung.
RESTART_BACKOFF_S = 5.0

_KEYS = itertools.count(1)


class PlannerUnavailable(RuntimeError):
    """The planner process did not answer (dead, hung, restarting or failed)."""


@dataclass(frozen=True)
class LoadedForecaster:
    """Builds the child's forecaster the way ``--model`` does
    (:func:`sliceai.planning.load_forecaster`); picklable, so it crosses to the child."""

    model: str | None = None
    device: str = "auto"
    threads: int | None = 1
    pool: bool = True

    def __call__(self) -> Forecaster:
        return load_forecaster(self.model, device=self.device, threads=self.threads, pool=self.pool)


def set_nice(nice: int | None) -> str | None:
    """Set this process's nice value to ``nice`` (None: leave it); what went wrong, if
    anything. Raising the priority (a value below the current one) needs root or
    CAP_SYS_NICE; without them the process keeps its priority and says so."""
    if nice is None:
        return None
    try:
        os.setpriority(os.PRIO_PROCESS, 0, nice)
    except OSError as exc:
        return (
            f"the planner process keeps nice {os.getpriority(os.PRIO_PROCESS, 0)}: setting "
            f"{nice} was refused ({exc.strerror}; a negative nice needs root or CAP_SYS_NICE)"
        )
    return None


def _child_main(conn: Connection, build: Callable[[], Forecaster], nice: int | None = None) -> None:
    """The planner process: set its priority, build the forecaster, then answer
    ``("plan", key, setup, args)`` and ``("swap", index, member)`` until the pipe closes
    or ``None`` comes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server process decides when to stop
    refused = set_nice(nice)
    try:
        forecaster = build()
    except BaseException as exc:
        conn.send(("failed", f"{type(exc).__name__}: {exc}"))
        return
    gc.freeze()  # the forecaster and the modules: a full collection skips them
    conn.send(("ready", forecaster.name, refused))
    planners: dict[int, Planner] = {}
    histories: dict[int, FloatArray] = {}  # the history each planner last planned from
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):  # the server process is gone
            return
        if message is None:
            return
        try:
            if message[0] == "swap":
                _, index, member = message
                if not isinstance(forecaster, PooledForecaster):
                    raise TypeError(f"{forecaster.name} has no members to swap")
                forecaster.swap_member(index, member)
                conn.send(("ok",))
                continue
            _, key, setup, (how, *given), rest = message
            if how == "full":  # the whole history, or the newest column appended
                history = given[0]
            else:
                column, length = given
                history = np.concatenate([histories[key], column], axis=1)[:, -length:]
            histories = {key: history}
            if setup is not None:
                policy, settings, snapshot, online = setup
                # a first solve in a fresh process loads compiled code: not against the clock
                Planner(
                    policy, RollingQuantileForecaster(), replace(settings, solve_deadline_s=None)
                ).plan(history, *rest)
                planner = Planner(policy, forecaster, settings)
                planner.resume(snapshot)
                forecaster.load_online_state(online)
                planners = {key: planner}  # one policy at a time
            planner = planners[key]
            forecast, step = planner.plan(history, *rest)
            conn.send(("ok", forecast, step))  # the plan first: the server publishes it
            conn.send(("state", planner.snapshot(), forecaster.online_state()))
        except Exception as exc:  # reported; the server process plans this interval itself
            conn.send(("error", f"{type(exc).__name__}: {str(exc)[:300]}"))


class PlannerProcess:
    """One child process that plans; thread-safe. Starting blocks until its forecaster is
    built (:class:`PlannerUnavailable` if it cannot be); :meth:`close` stops it."""

    def __init__(
        self,
        build: Callable[[], Forecaster],
        start_timeout_s: float = START_TIMEOUT_S,
        nice: int | None = None,
    ) -> None:
        self._build = build
        self.start_timeout_s = start_timeout_s
        #: The child's nice value (None: the server process's at start); each restarted
        #: child sets it again.
        self.nice = nice
        self._lock = threading.Lock()
        self._conn: Connection | None = None
        self._proc: multiprocessing.process.BaseProcess | None = None
        self._known: int | None = None  # the planner key the child holds
        self._unsettled = False  # a plan answered whose state message is still in the pipe
        self._closed = False
        self._restart_needed = threading.Event()
        self._swaps: dict[int, Forecaster] = {}  # members swapped in, for a restarted child
        #: Children started after the first (each restart after a death or a hang).
        self.restarts = 0
        self.pid: int | None = None  # the child's
        self._start()
        threading.Thread(
            target=self._restarter, name="sliceai-planner-restart", daemon=True
        ).start()

    def _start(self) -> None:
        ctx = multiprocessing.get_context("spawn")  # no fork: the server runs threads
        parent, child = ctx.Pipe()
        proc = ctx.Process(
            target=_child_main,
            args=(child, self._build, self.nice),
            name="sliceai-planner",
            daemon=True,
        )
        proc.start()
        child.close()
        try:
            if not parent.poll(self.start_timeout_s):
                raise PlannerUnavailable(f"not ready within {self.start_timeout_s:g} s")
            reply = parent.recv()
            for index, member in list(self._swaps.items()):  # a restarted child: swapped-in members
                if reply[0] == "ready":
                    parent.send(("swap", index, member))
                    if not parent.poll(self.start_timeout_s):
                        raise PlannerUnavailable("no answer to the swap while starting")
                    answer = parent.recv()
                    if answer[0] != "ok":
                        reply = ("failed", f"swapping member {index} in: {answer[1]}")
        except (EOFError, OSError) as exc:
            reply = ("failed", f"exited while starting ({exc or type(exc).__name__})")
        except PlannerUnavailable as exc:
            reply = ("failed", str(exc))
        if reply[0] != "ready":
            proc.kill()
            proc.join(5)
            parent.close()
            raise PlannerUnavailable(f"the planner process did not start: {reply[1]}")
        if reply[2] is not None:
            log.warning("%s", reply[2])
        with self._lock:
            self._conn, self._proc, self._known = parent, proc, None
            self._unsettled = False
            self.pid = proc.pid

    # -- calls ----------------------------------------------------------------------
    def plan(
        self,
        key: int,
        setup: Callable[[], tuple[Any, ...]],
        history: Callable[[bool], tuple[Any, ...]],
        rest: tuple[Any, ...],
        timeout_s: float,
    ) -> tuple[Forecast, PlanStep]:
        """One interval of planner ``key`` in the child: ``setup()`` gives what the child
        needs to build that planner when it does not hold it yet, ``history(first)`` the
        history to plan from (``("full", series)``, or unless ``first``, ``("append",
        column, length)`` onto the one sent before), ``rest`` the other arguments of
        :meth:`Planner.plan`. The child's state after the interval follows apart:
        :meth:`settle` (a call to ``plan`` settles a previous one first)."""
        with self._lock:
            self._settle(timeout_s)
            conn = self._connection()
            first = self._known != key
            message = ("plan", key, setup() if first else None, history(first), rest)
            reply = self._ask(conn, message, timeout_s)
            if reply[0] != "ok":
                self._known = None  # the child's state is in doubt: resend it next time
                raise PlannerUnavailable(f"the planner process failed: {reply[1]}")
            self._known = key
            self._unsettled = True
        _, forecast, step = reply
        return forecast, step

    def settle(self, timeout_s: float) -> tuple[Any, object] | None:
        """The child's state after the interval :meth:`plan` last answered: (the planner's
        :meth:`~sliceai.planning.Planner.snapshot`, the forecaster's online state), or None
        when it was taken already. :class:`PlannerUnavailable` when it does not come."""
        with self._lock:
            return self._settle(timeout_s)

    def _settle(self, timeout_s: float) -> tuple[Any, object] | None:
        if not self._unsettled:
            return None
        self._unsettled = False
        reply = self._ask(self._connection(), None, timeout_s)
        if reply[0] != "state":
            self._known = None
            raise PlannerUnavailable(f"the planner process failed: {reply[1]}")
        return reply[1], reply[2]

    def forget(self, key: int) -> None:
        """Planner ``key`` moved on in this process: resend its state next time."""
        with self._lock:
            if self._known == key:
                self._known = None

    def swap_member(self, index: int, member: Forecaster, timeout_s: float = 60.0) -> None:
        """Swap a member of the child's pooled forecaster (``serve --adapt``); a restarted
        child gets it too."""
        with self._lock:
            self._settle(timeout_s)
            reply = self._ask(self._connection(), ("swap", index, member), timeout_s)
            if reply[0] == "ok":
                self._swaps[index] = member
        if reply[0] != "ok":
            raise PlannerUnavailable(f"the planner process did not swap: {reply[1]}")

    def _connection(self) -> Connection:
        if self._conn is None:
            raise PlannerUnavailable("the planner process is restarting")
        return self._conn

    def _ask(self, conn: Connection, message: object, timeout_s: float) -> Any:
        """Send ``message`` (None: nothing, only read the next reply) and read the reply."""
        try:
            if message is not None:
                conn.send(message)
            if conn.poll(timeout_s):
                return conn.recv()
            why = f"no answer within {timeout_s:g} s"
        except (EOFError, OSError) as exc:
            why = f"exited ({exc or type(exc).__name__})"
        self._lost(why)
        raise PlannerUnavailable(f"the planner process {why}")

    # -- failure and shutdown ------------------------------------------------------------
    def _lost(self, why: str) -> None:
        """(Lock held.) Kill the child and restart it in the background."""
        log.warning("planner process %s; planning in the server process until it restarts", why)
        if self._proc is not None:
            self._proc.kill()
        if self._conn is not None:
            self._conn.close()
        self._conn, self._proc, self._known = None, None, None
        self._unsettled = False
        if not self._closed:
            self._restart_needed.set()

    def _restarter(self) -> None:
        """Restarts the child when :meth:`_lost` asks, until :meth:`close`. Started with
        the first child, so children it starts get that thread's priority (``serve``
        lowers its own afterwards; the planner's stays)."""
        while self._restart_needed.wait() and not self._closed:
            try:
                self._start()
            except PlannerUnavailable as exc:
                log.warning("%s; retrying in %g s", exc, RESTART_BACKOFF_S)
                time.sleep(RESTART_BACKOFF_S)
                continue
            self._restart_needed.clear()
            self.restarts += 1
            log.warning("planner process restarted")

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.is_alive()

    def close(self, timeout_s: float = 5.0) -> None:
        with self._lock:
            self._closed = True
            conn, proc = self._conn, self._proc
            self._conn = self._proc = None
        self._restart_needed.set()  # the restarter sees _closed and ends
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.send(None)
            conn.close()
        if proc is not None:
            proc.join(timeout_s)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout_s)


class RemotePlanner:
    """A policy's planner whose intervals run in ``process``; ``local``, a planner of the
    same policy here, mirrors its state and plans when the process cannot (module
    docstring). Has what the engine reads of a :class:`Planner`."""

    def __init__(self, local: Planner, process: PlannerProcess, timeout_s: float) -> None:
        self.local = local
        self.process = process
        self.timeout_s = timeout_s
        self.key = next(_KEYS)
        self._sent: FloatArray | None = None  # the history the child planned from last
        self._unsettled = False  # planned there; its state not mirrored here yet

    @property
    def policy(self) -> Any:
        return self.local.policy

    @property
    def risk(self) -> Any:
        self.settle()
        return self.local.risk

    def history_length(self, interval_s: float) -> int:
        return self.local.history_length(interval_s)

    def _setup(self) -> tuple[Any, ...]:
        local = self.local
        return (local.policy, local.settings, local.snapshot(), local.forecaster.online_state())

    def plan(
        self,
        history: FloatArray,
        start_time: float,
        interval_s: float,
        reserved_bps: FloatArray | None = None,
        measured_bps: FloatArray | None = None,
    ) -> tuple[Forecast, PlanStep]:
        """:meth:`Planner.plan` in the planner process, or here when it cannot."""
        rest = (start_time, interval_s, reserved_bps, measured_bps)

        def payload(first: bool) -> tuple[Any, ...]:
            # ~600 KB at 64 slices in full; a pipe moves 64 KB per write, and each write
            # waits for the interpreter lock again: send only what is new when possible
            sent = self._sent
            if first or sent is None or not _extends(history, sent):
                return ("full", history)
            return ("append", history[:, -1:].copy(), history.shape[1])

        try:
            self.settle()
            forecast, step = self.process.plan(self.key, self._setup, payload, rest, self.timeout_s)
        except PlannerUnavailable as exc:
            self._sent = None
            self.process.forget(self.key)  # the local state moves on: resend it
            forecast, step = self.local.plan(history, *rest)
            note = f"{exc}; planned in the server process"
            return forecast, replace(step, notes=(*step.notes, note))
        self._sent = history
        self._unsettled = True
        return forecast, step

    def settle(self) -> None:
        """Mirror the child's state after the last interval into the local planner (the
        engine calls it once the plan is published, so the plan does not wait for it; the
        next :meth:`plan` calls it first otherwise). When it does not come (the child died
        in between) the local planner keeps the state before that interval."""
        if not self._unsettled:
            return
        self._unsettled = False
        try:
            state = self.process.settle(self.timeout_s)
        except PlannerUnavailable as exc:
            log.warning("the planner's state after the last interval was lost: %s", exc)
            self._sent = None
            self.process.forget(self.key)
            return
        if state is not None:
            snapshot, online = state
            self.local.resume(snapshot)
            self.local.forecaster.load_online_state(online)


def _extends(history: FloatArray, sent: FloatArray) -> bool:
    """Whether ``history`` is ``sent`` with one column appended (the oldest columns
    dropped to keep its length): then the child can rebuild it from that column."""
    n, length = history.shape
    if sent.shape[0] != n or not 1 <= length <= sent.shape[1] + 1:
        return False
    kept = length - 1
    return bool(np.array_equal(history[:, :kept], sent[:, sent.shape[1] - kept :], equal_nan=True))
