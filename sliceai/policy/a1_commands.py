"""``sliceai policy import-a1`` and ``export-a1``: O-RAN A1 slice SLA policies
(:mod:`sliceai.policy.a1`); apart from ``commands`` so ``sliceai --help`` does not load
jsonschema."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from sliceai.policy.a1 import (
    A1_POLICY_TYPE,
    A1Error,
    Unmapped,
    export_a1,
    import_a1,
    parse_a1_text,
    parse_plmn,
)
from sliceai.policy.loader import PolicyError, dump_policy, load_policy
from sliceai.policy.model import Policy
from sliceai.policy.units import UnitError, parse_rate
from sliceai.usage import UsageError


def _load_or_exit(path: Path) -> Policy:
    try:
        return load_policy(path)
    except PolicyError as exc:
        if any(i.message.startswith("cannot read file") for i in exc.issues):
            raise UsageError(str(exc)) from None
        raise


def _report(unmapped: tuple[Unmapped, ...], notes: tuple[str, ...]) -> None:
    if unmapped:
        print(f"{len(unmapped)} field(s) not mapped:", file=sys.stderr)
        for u in unmapped:
            print(f"  {u}", file=sys.stderr)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)


def _write(text: str, output: Path | None) -> None:
    if output is None:
        sys.stdout.write(text)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{output}: cannot write: {exc.strerror}") from None


def import_a1_command(args: argparse.Namespace) -> int:
    """``sliceai policy import-a1 FILE.json... (--base P | --capacity R) [-o P.yaml]``."""
    docs = []
    for path in args.files:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise UsageError(f"{path}: cannot read file: {reason}") from None
        try:
            docs += parse_a1_text(text, str(path))
        except A1Error as exc:
            print(exc, file=sys.stderr)
            return 1
    capacity = None
    if args.capacity is not None:
        try:
            capacity = parse_rate(args.capacity)
        except UnitError as exc:
            raise UsageError(f"--capacity: {exc}") from None
    try:
        base = None if args.base is None else _load_or_exit(args.base)
        result = import_a1(
            docs, base=base, capacity_bps=capacity, name=args.name, vlan_start=args.vlan_start
        )
    except (A1Error, PolicyError) as exc:
        print(exc, file=sys.stderr)
        print(
            f"not imported: {len(docs)} A1 polic{'y' if len(docs) == 1 else 'ies'}", file=sys.stderr
        )
        return 1
    _write(dump_policy(result.policy), args.output)
    _report(result.unmapped, result.notes)
    print(
        f"imported {len(docs)} A1 polic{'y' if len(docs) == 1 else 'ies'} into policy "
        f"{result.policy.name} ({len(result.policy.slices)} slices)",
        file=sys.stderr,
    )
    return 0


def export_a1_command(args: argparse.Namespace) -> int:
    """``sliceai policy export-a1 POLICY.yaml [--plmn MCC-MNC] [-o FILE.json]``."""
    try:
        plmn = parse_plmn(args.plmn)
    except ValueError as exc:
        raise UsageError(f"--plmn: {exc}") from None
    try:
        policy = _load_or_exit(args.file)
    except PolicyError as exc:
        print(exc, file=sys.stderr)
        return 1
    try:
        result = export_a1(policy, plmn)
    except A1Error as exc:
        print(exc, file=sys.stderr)
        return 1
    _write(json.dumps(list(result.policies), indent=2) + "\n", args.output)
    _report(result.unmapped, result.notes)
    print(f"exported {len(result.policies)} A1 {A1_POLICY_TYPE} policies", file=sys.stderr)
    return 0
