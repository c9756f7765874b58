"""``sliceai check-policy`` and ``sliceai policy show|import-a1|export-a1``."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

from tabulate import tabulate

from sliceai.policy.loader import PolicyError, load_policy
from sliceai.policy.model import DIRECTIONS, Policy
from sliceai.policy.units import format_rate
from sliceai.usage import UsageError

A1_POLICY_TYPE = "ORAN_SliceSLATarget_1.0.0"  # sliceai.policy.a1's (not imported for --help)


def register(subparsers: Any) -> None:
    check = subparsers.add_parser(
        "check-policy",
        help="validate slice policy files (exit 0 valid, 1 invalid, 2 unreadable)",
        description="Validate slice policy YAML files; every problem is reported "
        "with file, line and field.",
    )
    check.add_argument("files", nargs="+", type=Path, metavar="FILE")
    check.add_argument("-q", "--quiet", action="store_true", help="print only problems")
    check.set_defaults(handler="sliceai.policy.commands:check")

    policy = subparsers.add_parser("policy", help="inspect slice policies")
    sub = policy.add_subparsers(dest="policy_command", metavar="ACTION", required=True)
    show = sub.add_parser(
        "show", help="a table of slices, their 5QI characteristics, guarantees and links"
    )
    show.add_argument("file", type=Path, metavar="FILE")
    show.set_defaults(handler="sliceai.policy.commands:show")
    imp = sub.add_parser(
        "import-a1",
        help=f"O-RAN A1 {A1_POLICY_TYPE} policies -> a slice policy (YAML)",
        description=f"Read O-RAN A1 {A1_POLICY_TYPE} policies (JSON: one object or a list "
        "per file), validate them against the type's JSON schema and write one slice policy. "
        "Slices match by S-NSSAI; A1 throughputs (kbit/s) become guaranteed / maximum DL and "
        "UL. The topology comes from --base (whose slices keep their 5QI, risk and match "
        "rules) or --capacity (one link). Every A1 field with no counterpart is listed. "
        "Exit 0 written, 1 invalid A1 or policy, 2 unreadable file.",
    )
    imp.add_argument("files", nargs="+", type=Path, metavar="FILE.json")
    topo = imp.add_mutually_exclusive_group(required=True)
    topo.add_argument("--base", type=Path, metavar="POLICY.yaml", help="policy giving the topology")
    topo.add_argument("--capacity", metavar="RATE", help="one link of this capacity, e.g. '1 Gbps'")
    imp.add_argument("--name", help="policy name (default: the base's, else a1-import)")
    imp.add_argument(
        "--vlan-start",
        type=int,
        default=100,
        help="first VLAN for slices new to the policy (A1 has no classification; default 100)",
    )
    imp.add_argument("-o", "--output", type=Path, help="policy YAML (default: stdout)")
    imp.set_defaults(handler="sliceai.policy.a1_commands:import_a1_command")
    exp = sub.add_parser(
        "export-a1",
        help=f"a slice policy -> O-RAN A1 {A1_POLICY_TYPE} policies (JSON list)",
        description=f"Write one A1 {A1_POLICY_TYPE} policy per slice (a JSON list), "
        "throughputs in kbit/s; every policy field A1 cannot carry is listed.",
    )
    exp.add_argument("file", type=Path, metavar="POLICY.yaml")
    exp.add_argument("--plmn", default="001-01", help="MCC-MNC of the scope (default 001-01)")
    exp.add_argument("-o", "--output", type=Path, help="JSON file (default: stdout)")
    exp.set_defaults(handler="sliceai.policy.a1_commands:export_a1_command")


def check(args: argparse.Namespace) -> int:
    """``sliceai check-policy FILE...``: 0 all valid, 1 one invalid, 2 one unreadable."""
    worst = 0
    for path in args.files:
        if not path.is_file():
            reason = "is a directory" if path.is_dir() else "no such file"
            print(
                f"{path}: cannot read file: {reason}",
                file=sys.stderr,
            )
            worst = 2
            continue
        try:
            policy = load_policy(path)
        except PolicyError as exc:
            unreadable = any(i.message.startswith("cannot read file") for i in exc.issues)
            for issue in exc.issues:
                print(issue, file=sys.stderr)
            print(
                f"{path}: invalid ({len(exc.issues)} problem{'s' if len(exc.issues) != 1 else ''})",
                file=sys.stderr,
            )
            worst = max(worst, 2 if unreadable else 1)
            continue
        if not args.quiet:
            print(f"{path}: ok ({len(policy.slices)} slices, {len(policy.topology.links)} links)")
    return worst


def show(args: argparse.Namespace) -> int:
    """``sliceai policy show FILE``: the policy as tables."""
    try:
        policy = load_policy(args.file)
    except PolicyError as exc:
        if any(i.message.startswith("cannot read file") for i in exc.issues):
            raise UsageError(str(exc)) from None
        print(exc, file=sys.stderr)
        return 1
    print(render_policy(policy))
    return 0


def _rate(x: float) -> str:
    return "-" if x == 0 else ("none" if math.isinf(x) else format_rate(x))


def render_policy(policy: Policy) -> str:
    head = (
        f"policy {policy.name}: {len(policy.slices)} slices on {len(policy.topology.links)} links"
    )
    if policy.description:
        head += f"\n{policy.description}"
    rows = []
    for s in policy.slices:
        q = s.five_qi.characteristics
        rows.append(
            [
                s.name + (" (default)" if s.default else ""),
                str(s.snssai),
                f"{q.value} {q.resource_type.value}",
                s.priority_level,
                f"{s.latency_budget_ms:g} ms (PDB {q.pdb_ms:g})",
                f"{q.per:.0e}",
                "/".join(_rate(s.guaranteed_bps(d)) for d in DIRECTIONS),
                "/".join(_rate(s.maximum_bps(d)) for d in DIRECTIONS),
                f"{s.risk:g}",
                ", ".join(policy.links_of(s.name)),
            ]
        )
    slices = tabulate(
        rows,
        headers=[
            "slice",
            "S-NSSAI",
            "5QI",
            "prio",
            "latency budget",
            "PER",
            "guaranteed DL/UL",
            "maximum DL/UL",
            "risk",
            "links",
        ],
        disable_numparse=True,
    )
    link_rows = []
    for link in policy.topology.links:
        members = [policy.slice(n) for n in link.slices]
        link_rows.append(
            [
                link.name,
                format_rate(link.capacity),
                "/".join(_rate(sum(m.guaranteed_bps(d) for m in members)) for d in DIRECTIONS),
                len(members),
            ]
        )
    links = tabulate(
        link_rows, headers=["link", "capacity", "guaranteed DL/UL", "slices"], disable_numparse=True
    )
    return f"{head}\n\n{slices}\n\n{links}"
