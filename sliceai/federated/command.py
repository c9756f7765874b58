"""The handler of ``sliceai federate simulate`` (parsers in :mod:`sliceai.federated.commands`).

Exit 0 with the checkpoint written; 1 when the federation failed; 2 for usage errors
(fewer than two sites, a missing trace file, a bad ``--init``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from sliceai.federated.commands import parse_sites
from sliceai.federated.local import LocalOptions
from sliceai.federated.simulate import Site, simulate
from sliceai.forecast.errors import ForecastError
from sliceai.usage import UsageError


def simulate_command(args: argparse.Namespace) -> int:
    try:
        sites = [Site(name, tuple(paths)) for name, paths in parse_sites(args.site)]
    except argparse.ArgumentTypeError as exc:
        raise UsageError(str(exc)) from None
    if len(sites) < 2:
        raise UsageError("give at least two sites (--site NAME=TRACES ...)")
    if len({s.name for s in sites}) != len(sites):
        raise UsageError("site names must differ")
    for site in sites:
        for p in site.traces:
            if not p.is_file():
                raise UsageError(f"--site {site.name}: {p}: no such file")
    if args.rounds < 1 or args.local_steps < 1 or args.batch_size < 1:
        raise UsageError("--rounds, --local-steps and --batch-size must be at least 1")
    if args.dp_noise is not None and not (args.dp_noise > 0 and args.dp_clip > 0):
        raise UsageError("--dp-noise and --dp-clip must be positive")
    init = None if args.init == "default" else Path(args.init)
    if init is not None and not init.is_dir():
        raise UsageError(f"--init {init}: no such checkpoint directory (or 'default')")
    local = LocalOptions(local_steps=args.local_steps, batch_size=args.batch_size, seed=args.seed)
    try:
        result = simulate(
            sites,
            args.rounds,
            out=args.out,
            init=init,
            member=args.member,
            local=local,
            secure_aggregation=args.secure_aggregation,
            noise_multiplier=args.dp_noise,
            clipping_norm=args.dp_clip,
            cpus=args.cpus,
        )
    except ForecastError as exc:
        print(f"sliceai federate: {exc}", file=sys.stderr)
        return 1
    summary = result.summary()
    print(json.dumps(summary, indent=1))
    if args.dp_noise is not None:
        print(
            f"differential privacy: noise std {result.noise_std:.4g} per parameter of the "
            f"average (z = {args.dp_noise:g}, clip {args.dp_clip:g}, {len(sites)} sites); "
            f"client-level epsilon {result.epsilon:.3g} at delta {result.delta:g} "
            f"over {result.rounds} rounds"
        )
    print(f"checkpoint in {args.out} (sliceai serve --model {args.out})")
    return 0
