"""``sliceai serve``: the gRPC service on a state store, optionally fed by a simulator.

The options are in :mod:`sliceai.api.commands`.
"""

from __future__ import annotations

import argparse
import ctypes
import functools
import gc
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from sliceai.api.addresses import host_of
from sliceai.api.limits import limits_from_flags
from sliceai.api.metrics import ServiceMetrics
from sliceai.api.metrics_http import MetricsConfigError, MetricsTls
from sliceai.api.server import (
    ServerConfigError,
    ServerSettings,
    SliceaiServer,
    TlsFiles,
    lower_priority,
)
from sliceai.engine import Engine, EngineError, EngineSettings, StateStore, StoreError
from sliceai.engine.planner_process import LoadedForecaster, PlannerProcess, PlannerUnavailable
from sliceai.engine.recorder import TelemetryRecorder
from sliceai.engine.simulate import SimulationError, Simulator
from sliceai.planning import load_forecaster
from sliceai.planning.forecasters import Forecaster, UnavailableForecaster
from sliceai.plugins import load
from sliceai.policy.bundled import bundled_policy_path
from sliceai.traffic.generators import bundled_scenarios
from sliceai.usage import UsageError


def default_db(env: Mapping[str, str] | None = None) -> Path:
    """Where ``sliceai serve`` keeps its state without ``--db``: ``$SLICEAI_DB``, else
    ``sliceai/sliceai.db`` under ``$XDG_STATE_HOME`` (``~/.local/state`` when unset),
    the XDG place for state that should survive restarts, not the current directory."""
    env = os.environ if env is None else env
    if env.get("SLICEAI_DB"):
        return Path(env["SLICEAI_DB"]).expanduser()
    base = env.get("XDG_STATE_HOME") or str(Path("~/.local/state").expanduser())
    return Path(base).expanduser() / "sliceai" / "sliceai.db"


def _bundled_policy(scenario: str) -> tuple[str, Path]:
    """The policy that goes with a bundled scenario (see :mod:`sliceai.policy.bundled`)."""
    path = bundled_policy_path(f"{scenario}.yaml")
    if not path.is_file():
        raise UsageError(f"--simulate {scenario}: no bundled policy for it; give --policy")
    return path.read_text(encoding="utf-8"), path


def _forecaster(model: str, device: str, torch_threads: int = 1) -> Any:
    try:
        # this process's only torch user is the forecaster
        return load_forecaster(model, device=device, threads=torch_threads)
    except Exception as exc:
        if model != "default":
            raise UsageError(f"--model {model}: {exc}") from None
        print(
            f"sliceai serve: bundled model unavailable ({exc}); using rolling quantiles",
            file=sys.stderr,
        )
        return UnavailableForecaster("model", str(exc))


def _planner_process(args: argparse.Namespace, forecaster: Forecaster) -> PlannerProcess:
    """The child that plans (``--planner-process``), with the forecaster this process
    loaded (or the same stand-in when the bundled model did not load)."""
    recipe: Callable[[], Forecaster]
    if isinstance(forecaster, UnavailableForecaster):
        recipe = functools.partial(UnavailableForecaster, forecaster.name, forecaster.why)
    else:
        recipe = LoadedForecaster(args.model, args.device, args.torch_threads)
    try:
        return PlannerProcess(recipe, nice=args.planner_nice)
    except PlannerUnavailable as exc:
        raise UsageError(f"{exc}; --no-planner-process plans in the server process") from None


#: With ``--request-nice`` and the planner process, the server process's own nice
#: increment (the child keeps the default, or ``--planner-nice``): the plans are the
#: child's, so under a flood of requests its CPU comes first; RPC handlers go
#: ``--request-nice`` lower still (make soak, 2 min: decision p99 105 -> 49 ms, the
#: planner's own p50 39 -> 27 ms). At nice 0 the child still waited for the CPU about 5 ms
#: of each plan at the median and 15 ms at p99 under the soak (wall minus CPU time of its
#: forecast and solve); at ``--planner-nice -10``, 1.2 and 5.3 ms.
SERVER_NICE = 5


#: The MEC 015 REST server of ``--rest``; loaded only then (FastAPI, uvicorn: extra ``rest``).
REST_SERVER = "sliceai.api.rest.serve:RestServer"
#: Builds the ``--adapt`` loop; loaded only then (it imports the training code).
ADAPTER = "sliceai.api.adapt:build_adapter"


def _adaptation(
    args: argparse.Namespace, engine: Engine, store: StateStore, metrics: ServiceMetrics
) -> tuple[TelemetryRecorder, Any]:
    """The telemetry recorder and the adaptation loop of ``--adapt`` (not started)."""
    if isinstance(engine.forecaster, UnavailableForecaster):
        raise UsageError("--adapt needs the generative model, and it did not load")
    recorder = TelemetryRecorder(store)
    recorder.attach(engine)
    adapter = load(ADAPTER)(
        engine,
        store,
        every_s=args.adapt_every,
        min_history_s=args.adapt_min_history,
        minutes=args.adapt_minutes,
        device=args.device,
        models_dir=args.db.parent / f"{args.db.stem}-models",
        base=str(args.model),
    )
    adapter.on_decision.append(metrics.observe_adaptation)
    resumed = adapter.resume(args.device)
    if resumed is not None:
        print(f"sliceai serve: resumed the adapted model in {resumed}", file=sys.stderr)
    return recorder, adapter


def _duration(seconds: float) -> str:
    """``21600`` -> ``"6 h"``: in the largest unit that leaves at least 1."""
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if seconds >= size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.3g} s"


#: glibc malloc arenas the server may use (``M_ARENA_MAX``): one per thread by default
#: grows RSS by about 145 MB in the first 30 s of many concurrent RPCs (make soak, 10 min);
#: with 2 the same ramp measured 71 MB. ``MALLOC_ARENA_MAX`` in the environment wins.
MALLOC_ARENAS = 2
_M_ARENA_MAX = -8


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Cap glibc's malloc arenas before the server's threads start; False where the C
    library is not glibc or ``MALLOC_ARENA_MAX`` is set (then it is left alone)."""
    if "MALLOC_ARENA_MAX" in os.environ or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    return bool(libc.mallopt(_M_ARENA_MAX, arenas))


def run(args: argparse.Namespace) -> int:
    """``sliceai serve``: run until SIGTERM or Ctrl-C; 0 after a clean shutdown."""
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    limit_malloc_arenas()
    interval = args.interval
    if (args.tls_cert is None) != (args.tls_key is None):
        raise UsageError("--tls-cert and --tls-key go together")
    if args.client_ca is not None and args.tls_cert is None:
        raise UsageError("--client-ca needs --tls-cert and --tls-key")
    if not 0 <= args.request_nice <= 19:
        raise UsageError(f"--request-nice must be 0..19, got {args.request_nice}")
    if args.planner_nice is not None:
        if not -20 <= args.planner_nice <= 19:
            raise UsageError(f"--planner-nice must be -20..19, got {args.planner_nice}")
        if not args.planner_process:
            raise UsageError(
                "--planner-nice sets the planner process's priority: drop --no-planner-process"
            )
    if args.torch_threads < 1:
        raise UsageError(f"--torch-threads must be at least 1, got {args.torch_threads}")
    limits = limits_from_flags(args.limit)
    if args.adapt and args.model == "empirical":
        raise UsageError("--adapt needs the generative model (--model default or DIR)")
    if args.adapt and not args.adapt_minutes > 0:
        raise UsageError(f"--adapt-minutes must be positive, got {args.adapt_minutes}")
    text = None
    if args.policy is not None:
        try:
            text = args.policy.read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"--policy {args.policy}: {exc.strerror}") from None
    if args.db is None:
        args.db = default_db()
        try:
            args.db.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(
                f"state directory {args.db.parent}: {exc.strerror}; give --db"
            ) from None
    try:
        store = StateStore(args.db)
    except StoreError as exc:
        raise UsageError(str(exc)) from None
    if text is None and args.simulate and store.latest_policy() is None:
        text, args.policy = _bundled_policy("campus" if args.simulate == "auto" else args.simulate)
    forecaster = _forecaster(args.model, args.device, args.torch_threads)
    process = _planner_process(args, forecaster) if args.planner_process else None
    if process is not None and args.request_nice:  # threads started from here inherit it
        lower_priority(SERVER_NICE)
    try:
        engine = Engine(
            store,
            text,
            forecaster,
            settings=EngineSettings(interval_s=interval, limits=limits),
            policy_source=str(args.policy),
            planner_process=process,
        )
    except EngineError as exc:
        if process is not None:
            process.close()
        print(f"sliceai serve: {exc}", file=sys.stderr)
        return 1
    tls = TlsFiles(args.tls_cert, args.tls_key, args.client_ca) if args.tls_cert else None
    try:
        server = SliceaiServer(
            engine,
            ServerSettings(
                args.listen,
                tls,
                rate_per_s=args.rate_limit,
                burst=2 * args.rate_limit,
                allow_anonymous=args.allow_anonymous,
                request_nice=args.request_nice,
            ),
        )
    except ServerConfigError as exc:
        raise UsageError(str(exc)) from None
    rest = None
    if args.rest is not None:  # bound before anything starts: a clash is a usage error
        try:
            rest = load(REST_SERVER)(
                engine, args.rest, tls, server.auth.limiter, args.allow_anonymous
            )
        except ServerConfigError as exc:
            raise UsageError(str(exc)) from None
    metrics = ServiceMetrics()
    metrics.attach(engine)
    metrics_port = None
    if args.metrics_port is not None:  # bound before anything starts: a clash is a usage error
        metrics_tls = MetricsTls(tls.cert, tls.key, tls.client_ca) if tls else None
        try:
            metrics_port = metrics.serve_http(
                args.metrics_port, args.metrics_addr, metrics_tls, args.allow_anonymous
            )
        except MetricsConfigError as exc:
            raise UsageError(str(exc)) from None
    adaptation = _adaptation(args, engine, store, metrics) if args.adapt else None
    simulator = None
    if args.simulate:
        scenario = args.simulate
        if scenario == "auto":
            scenario = engine.policy.name if engine.policy.name in bundled_scenarios() else "campus"
        try:
            simulator = Simulator(engine, scenario)
        except SimulationError as exc:
            raise UsageError(f"--simulate: {exc}") from None
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server.start()
    gc.freeze()  # start-up's objects (modules, the model) leave the collector's generations
    host = args.listen.rsplit(":", 1)[0]
    security = "mutual TLS" if args.client_ca else "TLS" if tls else "plaintext"
    print(
        f"sliceai serve: listening on {host}:{server.port} ({security}), policy "
        f"{engine.policy.name} v{engine.policy_record.version}, interval {interval:g} s, "
        f"db {args.db}",
        file=sys.stderr,
        flush=True,
    )
    if rest is not None:
        rest.start()
        print(
            f"sliceai serve: MEC 015 REST on {rest.scheme}://{host_of(args.rest)}:{rest.port}"
            "/bwm/v1/bw_allocations",
            file=sys.stderr,
            flush=True,
        )
    if metrics_port is not None:
        scheme = "https" if tls else "http"
        print(
            f"sliceai serve: metrics on {scheme}://{args.metrics_addr}:{metrics_port}/metrics",
            file=sys.stderr,
            flush=True,
        )
    if simulator is not None:
        simulator.start()
        print(
            f"sliceai serve: simulating {len(simulator.slices)} slices as source 'simulator'",
            file=sys.stderr,
            flush=True,
        )
    if adaptation is not None:
        for part in adaptation:
            part.start()
        print(
            f"sliceai serve: adapting the model every {_duration(args.adapt_every)} once "
            f"{_duration(args.adapt_min_history)} of telemetry is recorded",
            file=sys.stderr,
            flush=True,
        )
    while not stop.wait(0.5):
        pass
    print("sliceai serve: shutting down", file=sys.stderr, flush=True)
    if adaptation is not None:
        adaptation[1].stop()
    if simulator is not None:
        simulator.stop()
    if rest is not None:
        rest.stop(grace_s=2.0)
    server.stop(grace_s=2.0)
    if adaptation is not None:
        adaptation[0].stop()
    metrics.close()
    store.close()
    return 0
