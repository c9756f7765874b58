"""``sliceai controller``: run the os-ken app that enforces plans on OpenFlow 1.3 switches.

os-ken 4 ships no ``osken-manager``; this launcher loads the app with
``AppManager.load_apps`` / ``instantiate_apps`` and waits on the app threads.
The OpenFlow listen address goes into os-ken's ``CONF`` options
(``ofp_listen_host``, ``ofp_tcp_listen_port``).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from sliceai.controller.flows import ControllerConfigError, EnforcementConfig
from sliceai.controller.service_link import LinkSettings

APP_MODULE = "sliceai.controller.app"


def _host_port(text: str, what: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"{what}: expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def _ports(text: str) -> tuple[int, ...]:
    try:
        ports = tuple(int(p) for p in text.split(",") if p.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--core-ports: expected e.g. '1' or '1,2', got {text!r}"
        ) from None
    if not ports:
        raise argparse.ArgumentTypeError("--core-ports: name at least one port")
    return ports


def _metadata(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--metadata: expected KEY=VALUE, got {text!r}")
    return key.lower(), value


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--policy", type=Path, required=True, help="slice policy YAML")
    p.add_argument(
        "--optimizer",
        metavar="HOST:PORT",
        help="sliceai service (ControllerService); without it the guarantees-only plan runs",
    )
    p.add_argument(
        "--ofp-listen",
        metavar="HOST:PORT",
        default="127.0.0.1:6653",
        help="OpenFlow listen address (default 127.0.0.1:6653)",
    )
    p.add_argument(
        "--core-ports",
        type=_ports,
        default=(1,),
        help="OpenFlow port numbers facing the core, comma-separated: traffic entering there is "
        "downlink, from other ports uplink (default 1)",
    )
    p.add_argument(
        "--fallback-after",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="with the service unreachable, keep its last plan this long, then enforce the "
        "guarantees-only plan (default 30)",
    )
    p.add_argument(
        "--poll-interval", type=float, default=1.0, metavar="SECONDS", help="counter polling period"
    )
    p.add_argument(
        "--burst",
        type=float,
        default=0.5,
        metavar="SECONDS",
        help="meter burst, seconds of rate (0.5: less starves TCP)",
    )
    p.add_argument(
        "--stats-file", type=Path, help="write state and per-slice rates here as JSON each poll"
    )
    p.add_argument(
        "--reconnect-max",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="longest wait between reconnect attempts (backoff from 0.5 s doubles up to it)",
    )
    p.add_argument("--source-id", default="osken-1", help="telemetry source name sent in Hello")
    p.add_argument("--tls-ca", help="CA certificate (PEM) to verify the service: TLS")
    p.add_argument("--tls-cert", help="client certificate (PEM) for mutual TLS")
    p.add_argument("--tls-key", help="client key (PEM) for mutual TLS")
    p.add_argument(
        "--metadata",
        type=_metadata,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra gRPC call metadata (repeatable), e.g. an authorization token",
    )
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])


def build_parser() -> argparse.ArgumentParser:
    """The option parser alone (used for ``SLICEAI_CONTROLLER_ARGS`` under ryu-manager)."""
    p = argparse.ArgumentParser(prog="sliceai controller")
    _add_arguments(p)
    return p


def settings_from_args(args: argparse.Namespace) -> Any:
    """Parsed options -> :class:`sliceai.controller.app.AppSettings` (raises on bad values)."""
    from sliceai.controller.app import AppSettings

    if not args.policy.is_file():
        raise ControllerConfigError(f"--policy: cannot read {args.policy}")
    if not args.fallback_after > 0:
        raise ControllerConfigError(f"--fallback-after: {args.fallback_after} s must be > 0")
    if not 0.05 <= args.poll_interval <= 60:
        raise ControllerConfigError(f"--poll-interval: {args.poll_interval} s is outside 0.05..60")
    if (args.tls_cert is None) != (args.tls_key is None):
        raise ControllerConfigError("--tls-cert and --tls-key go together")
    link = None
    if args.optimizer:
        host, port = _host_port(args.optimizer, "--optimizer")
        link = LinkSettings(
            target=f"{host}:{port}" if ":" not in host else f"[{host}]:{port}",
            source_id=args.source_id,
            tls_ca=args.tls_ca,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            metadata=tuple(args.metadata),
            backoff_max_s=max(0.5, args.reconnect_max),
        )
    return AppSettings(
        policy_path=args.policy,
        enforcement=EnforcementConfig(core_ports=args.core_ports, burst_s=args.burst),
        link=link,
        fallback_after_s=args.fallback_after,
        poll_interval_s=args.poll_interval,
        stats_file=args.stats_file,
    )


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "controller",
        help="run the OpenFlow controller plugin (os-ken) that enforces plans as meters",
        description="Run the os-ken app: connects switches (OpenFlow 1.3), streams telemetry to "
        "the sliceai service and enforces its plans as meters.",
    )
    _add_arguments(p)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from sliceai.cli import UsageError

    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        ofp_host, ofp_port = _host_port(args.ofp_listen, "--ofp-listen")
        settings = settings_from_args(args)
    except (argparse.ArgumentTypeError, ControllerConfigError) as exc:
        raise UsageError(str(exc)) from None
    try:
        from os_ken import cfg
        from os_ken.base.app_manager import AppManager
        from os_ken.lib import hub
    except ImportError:
        raise UsageError("os-ken is not installed: pip install 'sliceai[controller]'") from None
    from sliceai.controller import app

    app.configure(settings)
    cfg.CONF(args=[], project="os_ken")
    cfg.CONF.set_override("ofp_listen_host", ofp_host)
    cfg.CONF.set_override("ofp_tcp_listen_port", ofp_port)
    manager = AppManager.get_instance()
    manager.load_apps([APP_MODULE])
    contexts = manager.create_contexts()
    threads = manager.instantiate_apps(**contexts)

    def _stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    print(f"sliceai controller: OpenFlow on {ofp_host}:{ofp_port}", file=sys.stderr, flush=True)
    try:
        hub.joinall(threads)
    except KeyboardInterrupt:
        pass
    finally:
        manager.close()
    return 0
