"""What the controller app runs with: :class:`AppSettings`, from ``sliceai controller``'s options.

The same options reach the app two ways: the ``sliceai controller`` launcher
(:mod:`sliceai.controller.launcher`) parses them, or, when a framework manager
loads the app itself (``ryu-manager``), the app parses the
``SLICEAI_CONTROLLER_ARGS`` environment variable with
:func:`settings_from_command_line`.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sliceai.controller.commands import build_parser
from sliceai.controller.flows import ControllerConfigError, EnforcementConfig
from sliceai.controller.service_link import LinkSettings


@dataclass(frozen=True)
class AppSettings:
    """Everything the app needs. Times in seconds."""

    policy_path: Path
    enforcement: EnforcementConfig
    link: LinkSettings | None
    fallback_after_s: float = 30.0
    poll_interval_s: float = 1.0
    stats_file: Path | None = None


def host_port(text: str, what: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` too) -> (host, port); ``what`` names the option in errors."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"{what}: expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def settings_from_args(args: argparse.Namespace) -> AppSettings:
    """Parsed options -> :class:`AppSettings`.

    Raises ``ControllerConfigError`` on bad values and ``argparse.ArgumentTypeError`` on a
    malformed ``--optimizer``.
    """
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
        host, port = host_port(args.optimizer, "--optimizer")
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


def settings_from_command_line(argv: Sequence[str]) -> AppSettings:
    """``sliceai controller``'s options as words (``--policy p.yaml ...``) -> settings."""
    return settings_from_args(build_parser().parse_args(list(argv)))
