"""``sliceai federate simulate``: N sites on one machine with Flower's simulation runtime
(``flwr.simulation.run_simulation``, Ray underneath), each site its own traces.

The ServerApp runs in this process (a thread); each site's ClientApp runs in a Ray
worker that reads only that site's files (``partition-id`` -> the site's paths) and
trains there. The global network of every round comes back through the strategy;
the last one is written as a checkpoint (:func:`sliceai.federated.local.write_checkpoint`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from flwr.app import Context, Message
from flwr.simulation import run_simulation

from sliceai.federated.apps import (
    DELTA,
    FederationError,
    FederationResult,
    ServerOutcome,
    ServerSettings,
    epsilon,
    make_client_app,
    make_server_app,
)
from sliceai.federated.local import (
    LocalOptions,
    SiteTrainer,
    get_arrays,
    network,
    read_traces,
    which_ensemble,
    write_checkpoint,
)
from sliceai.forecast.checkpoint import checkpoint_dir
from sliceai.forecast.errors import ForecastError
from sliceai.forecast.pipeline import ForecastPipeline
from sliceai.traffic.longcsv import read_long_csv


@dataclass(frozen=True)
class Site:
    name: str
    traces: tuple[Path, ...]


def quiet_flower() -> None:
    """No telemetry from Flower (nothing leaves the machine but what the sites send)."""
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")


def clock_of(paths: Sequence[Path]) -> float:
    """The interval of the first trace (the driver reads only that of the sites' files)."""
    first = next(iter(read_long_csv(paths[0])), None)
    if first is None:
        raise ForecastError(f"{paths[0]}: no trace")
    return float(first.interval_s)


def simulate(
    sites: Sequence[Site],
    rounds: int,
    out: str | Path | None = None,
    init: str | Path | None = None,
    member: int = 0,
    local: LocalOptions | None = None,
    secure_aggregation: bool = True,
    noise_multiplier: float | None = None,
    clipping_norm: float = 1.0,
    inspect: Callable[[Message], None] | None = None,
    cpus: int | None = None,
    trainer_factory: Callable[[Site, ForecastPipeline], SiteTrainer] | None = None,
) -> FederationResult:
    """Run ``rounds`` of federated training over ``sites`` (module docstring) and write
    the checkpoint to ``out`` (None: write nothing). ``trainer_factory`` builds a site's
    trainer in its worker (default: its traces, ``member`` of the bundled network)."""
    if len(sites) < 2:
        raise ForecastError("a federation needs at least two sites")
    if rounds < 1:
        raise ForecastError("rounds must be at least 1")
    quiet_flower()
    source = checkpoint_dir(init)
    pipeline = ForecastPipeline.load(source, device="cpu")
    which = which_ensemble(pipeline, clock_of(sites[0].traces))
    initial = get_arrays(network(pipeline, which, member))
    settings = ServerSettings(
        rounds=rounds,
        sites=len(sites),
        secure_aggregation=secure_aggregation,
        noise_multiplier=noise_multiplier,
        clipping_norm=clipping_norm,
    )
    outcome = ServerOutcome()
    opts = local or LocalOptions()
    site_list = list(sites)
    factory = trainer_factory or _default_trainer(member, opts)

    def trainer_of(context: Context) -> SiteTrainer:
        site = site_list[int(context.node_config["partition-id"])]
        return factory(site, ForecastPipeline.load(source, device="cpu"))

    server_app = make_server_app(settings, initial, outcome, inspect)
    client_app = make_client_app(
        trainer_of, rounds, secure_aggregation, noise_multiplier is not None
    )
    n_cpus = cpus or max(1, min(len(sites), os.cpu_count() or 1))
    run_simulation(
        server_app=server_app,
        client_app=client_app,
        num_supernodes=len(sites),
        backend_config={
            "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
            "init_args": {
                "num_cpus": n_cpus,
                "num_gpus": 0,
                "include_dashboard": False,
                "logging_level": "error",
                "log_to_driver": False,
            },
        },
    )
    if rounds not in outcome.arrays:
        done = max(outcome.arrays) if outcome.arrays else 0
        raise FederationError(
            f"the federation stopped after round {done} of {rounds} (a site failed; see the log)"
        )
    result = FederationResult(
        sites=[s.name for s in sites],
        rounds=rounds,
        which=which,
        member=member,
        secure_aggregation=secure_aggregation,
        noise_multiplier=noise_multiplier,
        noise_std=outcome.noise_std,
        epsilon=epsilon(noise_multiplier, rounds, DELTA) if noise_multiplier else float("inf"),
        delta=DELTA,
        proximal_mu=opts.proximal_mu,
        arrays=dict(outcome.arrays),
    )
    if out is not None:
        write_checkpoint(
            init,
            pipeline,
            which,
            outcome.final,
            out,
            member,
            federated=result.summary(),
        )
    return result


__all__ = ["DELTA", "FederationError", "FederationResult", "Site", "simulate"]


def _default_trainer(
    member: int, opts: LocalOptions
) -> Callable[[Site, ForecastPipeline], SiteTrainer]:
    def build(site: Site, pipeline: ForecastPipeline) -> SiteTrainer:
        return SiteTrainer(read_traces(site.traces), pipeline, member, opts)

    return build
