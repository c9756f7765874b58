"""The ``sliceai`` command: one entry point, one sub-command per task.

Each area that contributes sub-commands has a ``commands.py`` (listed in
:data:`COMMAND_MODULES`) exposing ``register(subparsers)``: it adds its
parsers and names each one's handler by a dotted path,
``set_defaults(handler="sliceai.replay.replay_command:run")``. A handler takes
the parsed ``argparse.Namespace`` and returns the exit code. :func:`main`
builds every parser, parses, then loads only the chosen handler's module (with
:func:`sliceai.plugins.load`, the package's one late-import mechanism) and calls
it. So a ``commands.py`` imports only what its parsers need and stays cheap,
``sliceai --help`` imports neither torch, grpc, os-ken nor matplotlib, and the
handler modules import everything at their top. A handler may sit in its
``commands.py`` when it needs nothing more than the parser module imports anyway
(``sliceai check-policy``, ``sliceai bench``, ``sliceai sim``).

Exit codes follow the usual convention: 0 success, 1 the input was checked
and found wanting (an invalid policy, a failed check), 2 usage errors,
unreadable files or a missing optional dependency.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import cast

from sliceai import __version__
from sliceai.plugins import MissingDependency, load
from sliceai.usage import UsageError

# Modules that contribute sub-commands, in the order they appear in --help.
COMMAND_MODULES: tuple[str, ...] = (
    "sliceai.policy.commands",
    "sliceai.bench.commands",
    "sliceai.traffic.commands",
    "sliceai.controller.commands",
    "sliceai.replay.commands",
    "sliceai.sweep.commands",
    "sliceai.forecast_commands",
    "sliceai.federated.commands",
    "sliceai.api.commands",
)

Handler = Callable[[argparse.Namespace], int]

__all__ = ["COMMAND_MODULES", "UsageError", "build_parser", "handler_of", "main", "run"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sliceai",
        description="Risk-aware QoS optimizer for 5G network slices.",
    )
    parser.add_argument("--version", action="version", version=f"sliceai {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        load(name).register(subparsers)
    return parser


def handler_of(args: argparse.Namespace) -> Handler | None:
    """The function that carries out the parsed command, loaded now; None when none was given.

    ``handler`` is its dotted path (``"module:function"``).
    """
    spec = getattr(args, "handler", None)
    return None if spec is None else cast(Handler, load(spec))


def run(args: argparse.Namespace) -> int:
    """Carry out a parsed command: load its handler and return its exit code."""
    handler = handler_of(args)
    if handler is None:
        raise UsageError("no command given")
    return int(handler(args))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "handler", None) is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return run(args)
    except (UsageError, MissingDependency) as exc:
        print(f"sliceai {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
