"""The handlers of ``sliceai federate simulate | server | client`` (parsers in
:mod:`sliceai.federated.commands`).

Exit 0 with the checkpoint written (a client: its SuperNode stopped cleanly or on
SIGTERM / SIGINT); 1 when the federation failed or a site was refused; 2 for usage errors
(fewer than two sites, a missing trace, key or certificate file, a bad ``--init``), with
nothing started and nothing written.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from sliceai.federated import deployment as dep
from sliceai.federated.commands import parse_sites
from sliceai.federated.local import LocalOptions, network, which_ensemble
from sliceai.federated.simulate import Site, simulate
from sliceai.forecast.checkpoint import checkpoint_dir
from sliceai.forecast.errors import ForecastError
from sliceai.forecast.pipeline import ForecastPipeline
from sliceai.policy.units import parse_duration_s
from sliceai.traffic import TraceError
from sliceai.traffic.longcsv import read_long_csv
from sliceai.usage import UsageError


def _sites(values: list[str], what: str) -> list[tuple[str, list[Path]]]:
    try:
        sites = parse_sites(values)
    except argparse.ArgumentTypeError as exc:
        raise UsageError(str(exc)) from None
    if len({name for name, _ in sites}) != len(sites):
        raise UsageError("site names must differ")
    for name, paths in sites:
        if not paths:
            raise UsageError(f"--site {name}: no {what} given")
        for p in paths:
            if not p.is_file():
                raise UsageError(f"--site {name}: {p}: no such file")
    return sites


def _training_options(args: argparse.Namespace) -> Path | None:
    """Check the training flags shared by simulate and server; the ``--init`` directory."""
    if args.rounds < 1 or args.local_steps < 1 or args.batch_size < 1:
        raise UsageError("--rounds, --local-steps and --batch-size must be at least 1")
    if args.dp_noise is not None and not (args.dp_noise > 0 and args.dp_clip > 0):
        raise UsageError("--dp-noise and --dp-clip must be positive")
    if not args.proximal_mu >= 0:
        raise UsageError("--proximal-mu must be at least 0 (0: FedAvg)")
    init = None if args.init == "default" else Path(args.init)
    if init is not None and not init.is_dir():
        raise UsageError(f"--init {init}: no such checkpoint directory (or 'default')")
    return init


def simulate_command(args: argparse.Namespace) -> int:
    sites = [Site(name, tuple(paths)) for name, paths in _sites(args.site, "traces")]
    if len(sites) < 2:
        raise UsageError("give at least two sites (--site NAME=TRACES ...)")
    init = _training_options(args)
    local = LocalOptions(
        local_steps=args.local_steps,
        batch_size=args.batch_size,
        seed=args.seed,
        proximal_mu=args.proximal_mu,
    )
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


def server_command(args: argparse.Namespace) -> int:
    sites = _sites(args.site, "public key")
    if len(sites) < 2:
        raise UsageError("give at least two sites (--site NAME=KEY.pub ...)")
    for name, paths in sites:
        if len(paths) != 1:
            raise UsageError(f"--site {name}: one public key per site")
        dep.check_public_key(paths[0], f"--site {name}")
    dep.check_files(("--tls-cert", args.tls_cert), ("--tls-key", args.tls_key), ("--ca", args.ca))
    host, port = dep.parse_address(args.listen, "--listen")
    init = _training_options(args)
    try:
        interval = parse_duration_s(args.interval)
    except ValueError as exc:
        raise UsageError(f"--interval {args.interval!r}: {exc}") from None
    if interval <= 0:
        raise UsageError("--interval must be positive")
    if args.timeout is not None and args.timeout <= 0:
        raise UsageError("--timeout must be positive")
    try:
        pipeline = ForecastPipeline.load(checkpoint_dir(init), device="cpu")
        ensemble = which_ensemble(pipeline, interval)
        network(pipeline, ensemble, args.member)
    except ForecastError as exc:
        raise UsageError(f"--init / --member: {exc}") from None
    plan = dep.ServerPlan(
        host=host,
        port=port,
        cert=args.tls_cert.resolve(),
        key=args.tls_key.resolve(),
        ca=args.ca.resolve(),
        sites=[(name, paths[0].resolve()) for name, paths in sites],
        config=dep.run_config(args, [name for name, _ in sites], ensemble),
        out=args.out,
        timeout=args.timeout,
        flower_log=None if args.flower_log is None else args.flower_log.resolve(),
    )
    return dep.serve(plan, sys.stderr)


def client_command(args: argparse.Namespace) -> int:
    sites = _sites([args.site], "traces")
    name, traces = sites[0]
    for p in traces:
        try:
            if not list(read_long_csv(p)):
                raise UsageError(f"--site {name}: {p}: no trace")
        except (OSError, TraceError) as exc:
            raise UsageError(f"--site {name}: {p}: {exc}") from None
    dep.check_files(("--ca", args.ca))
    dep.check_private_key(args.key, "--key")
    dep.parse_address(args.superlink, "--superlink")
    if args.init != "default" and not Path(args.init).is_dir():
        raise UsageError(f"--init {args.init}: no such checkpoint directory (or 'default')")
    if args.max_wait is not None and args.max_wait <= 0:
        raise UsageError("--max-wait must be positive")
    return dep.join(
        name,
        traces,
        args.superlink,
        args.ca.resolve(),
        args.key.resolve(),
        args.init,
        args.max_wait,
        sys.stderr,
    )
