"""The ``sliceai`` command: one entry point, one sub-command per task.

Each sub-command lives in its own module next to the code it drives and
exposes ``register(subparsers)``; the module adds its parser and sets
``func`` to a callable ``(args) -> int`` (the exit code). Modules are imported
lazily only to build the parser, so ``sliceai --version`` stays fast.

Exit codes follow the usual convention: 0 success, 1 the input was checked
and found wanting (an invalid policy, a failed check), 2 usage errors or
unreadable files.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from sliceai import __version__

# Modules that contribute sub-commands, in the order they appear in --help.
COMMAND_MODULES: tuple[str, ...] = (
    "sliceai.policy.commands",
    "sliceai.bench.commands",
    "sliceai.traffic.commands",
    "sliceai.controller.commands",
    "sliceai.replay.commands",
    "sliceai.forecast.commands",
    "sliceai.api.commands",
    "sliceai.demo",
)


class UsageError(Exception):
    """Bad command-line usage or an unreadable input file (exit code 2)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sliceai",
        description="Risk-aware QoS optimizer for 5G network slices.",
    )
    parser.add_argument("--version", action="version", version=f"sliceai {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(func(args))
    except UsageError as exc:
        print(f"sliceai {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
