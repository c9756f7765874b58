"""The Flower app a deployment runs (``sliceai federate server`` / ``client``): the FAB
that :mod:`sliceai.federated.deployment` writes names ``server_app`` and ``client_app``
here, so the SuperLink's ``flwr-serverapp`` and each SuperNode's ``flwr-clientapp``
import them from the installed sliceai (the FAB carries no code of its own).

Both are the simulation's apps (:mod:`sliceai.federated.apps`) read from the run's
configuration (``run_config``, written by the server: rounds, SecAgg+, DP, FedProx's mu,
the local recipe, which network) and, on a site, from the SuperNode's ``node_config``
(the site's name, its trace files and ``--init``). A site trains only if its traces are
served by the ensemble the server federates. The ServerApp writes the checkpoint to the
run's ``out`` when every round aggregated.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flwr.app import Context
from flwr.server import Grid
from flwr.serverapp import ServerApp

from sliceai.federated.apps import (
    DELTA,
    FederationError,
    FederationResult,
    ServerOutcome,
    ServerSettings,
    epsilon,
    make_client_app,
    serve_rounds,
)
from sliceai.federated.deployment import (
    NODE_INIT,
    NODE_SITE,
    NODE_TRACES,
    init_of,
)
from sliceai.federated.local import (
    LocalOptions,
    SiteTrainer,
    get_arrays,
    network,
    read_traces,
    write_checkpoint,
)
from sliceai.forecast.checkpoint import checkpoint_dir
from sliceai.forecast.errors import ForecastError
from sliceai.forecast.pipeline import ForecastPipeline


def local_options(config: dict[str, Any]) -> LocalOptions:
    return LocalOptions(
        local_steps=int(config["local-steps"]),
        batch_size=int(config["batch-size"]),
        seed=int(config["seed"]),
        proximal_mu=float(config["proximal-mu"]),
    )


def server_settings(config: dict[str, Any]) -> ServerSettings:
    noise = float(config["dp-noise"])
    return ServerSettings(
        rounds=int(config["rounds"]),
        sites=int(config["sites"]),
        secure_aggregation=bool(config["secure-aggregation"]),
        noise_multiplier=noise if noise > 0 else None,
        clipping_norm=float(config["dp-clip"]),
    )


server_app = ServerApp()


@server_app.main()  # type: ignore[untyped-decorator]
def _serve(grid: Grid, context: Context) -> None:
    config = dict(context.run_config)
    settings = server_settings(config)
    init = init_of(str(config["init"]))
    which, member = str(config["ensemble"]), int(config["member"])
    pipeline = ForecastPipeline.load(checkpoint_dir(init), device="cpu")
    outcome = ServerOutcome()
    serve_rounds(grid, context, settings, get_arrays(network(pipeline, which, member)), outcome)
    if settings.rounds not in outcome.arrays:
        done = max(outcome.arrays) if outcome.arrays else 0
        raise FederationError(
            f"the federation stopped after round {done} of {settings.rounds} (a site failed)"
        )
    noise = settings.noise_multiplier
    result = FederationResult(
        sites=str(config["site-names"]).split(","),
        rounds=settings.rounds,
        which=which,
        member=member,
        secure_aggregation=settings.secure_aggregation,
        noise_multiplier=noise,
        noise_std=outcome.noise_std,
        epsilon=epsilon(noise, settings.rounds, DELTA) if noise else float("inf"),
        delta=DELTA,
        proximal_mu=float(config["proximal-mu"]),
        runtime="deployment",
    )
    out = Path(str(config["out"]))
    write_checkpoint(init, pipeline, which, outcome.final, out, member, federated=result.summary())


def _trainer_of(context: Context) -> SiteTrainer:
    """The site's trainer, from its SuperNode's node config and the run's config."""
    node, run = dict(context.node_config), dict(context.run_config)
    paths = [Path(p) for p in str(node[NODE_TRACES]).split("\n") if p]
    pipeline = ForecastPipeline.load(init_of(str(node[NODE_INIT])), device="cpu")
    trainer = SiteTrainer(read_traces(paths), pipeline, int(run["member"]), local_options(run))
    if trainer.which != run["ensemble"]:
        raise ForecastError(
            f"site {node[NODE_SITE]}: its traces are served by the {trainer.which} ensemble, "
            f"the server federates the {run['ensemble']} one (--interval)"
        )
    return trainer


client_app = make_client_app(
    _trainer_of,
    rounds=lambda context: int(context.run_config["rounds"]),
    secure_aggregation=lambda context: bool(context.run_config["secure-aggregation"]),
    differential_privacy=lambda context: float(context.run_config["dp-noise"]) > 0,
)

__all__ = ["client_app", "local_options", "server_app", "server_settings"]
