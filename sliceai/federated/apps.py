"""The Flower apps of ``sliceai federate``: one ServerApp, one ClientApp, the same in the
simulation and in a deployment (the only module of sliceai that imports flwr, with
:mod:`sliceai.federated.simulate` and :mod:`sliceai.federated.deploy`, the FAB a
deployment runs).

Server: Flower's legacy ``FedAvg`` strategy (every site every round, each site weighing
the same: a site reports weight 1, so the server learns nothing of how much data a site
holds) started from the bundled network (:mod:`sliceai.federated.local`), run by
Flower's ``DefaultWorkflow`` whose fit step is ``SecAggPlusWorkflow`` (secure aggregation,
on by default): the server only ever sees masked, quantized vectors and the sum.
With ``noise_multiplier`` the strategy is wrapped in Flower's
``DifferentialPrivacyClientSideFixedClipping`` (the sites clip their update to
``clipping_norm`` with ``fixedclipping_mod``, the server adds Gaussian noise of standard
deviation ``noise_multiplier * clipping_norm / sites`` to the average; client-level DP).

Client: a ``NumPyClient`` whose ``fit`` is :meth:`SiteTrainer.fit
<sliceai.federated.local.SiteTrainer.fit>` (the project's training step), behind the
mods ``secaggplus_mod`` (and ``fixedclipping_mod`` inside it with DP, so the update is
clipped before it is masked).

:class:`WatchedGrid` wraps the grid the ServerApp is given: every message the server
receives passes ``inspect`` first (the tests check there that nothing but parameter-shaped
arrays and the protocol's keys arrive).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from flwr.app import Context, Message
from flwr.client import NumPyClient
from flwr.client.mod import fixedclipping_mod, secaggplus_mod
from flwr.clientapp import ClientApp
from flwr.common import ndarrays_to_parameters
from flwr.server import Grid, LegacyContext, ServerConfig
from flwr.server.strategy import DifferentialPrivacyClientSideFixedClipping, FedAvg, Strategy
from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow
from flwr.serverapp import ServerApp

from sliceai.federated.local import Arrays, SiteTrainer
from sliceai.forecast.errors import ForecastError

#: Every parameter of the bundled networks lies within +-4.3; SecAgg+ clips to this
#: range before quantizing (2**22 levels: a step of 7.6e-6).
SECAGG_CLIPPING_RANGE = 16.0


#: The privacy budget's delta when DP is on.
DELTA = 1e-5


class FederationError(ForecastError):
    """The federation did not finish (a site failed, secure aggregation halted)."""


@dataclass
class FederationResult:
    """What a federation did; ``epsilon`` at ``delta`` when DP was on (else inf)."""

    sites: list[str]
    rounds: int
    which: str
    member: int
    secure_aggregation: bool
    noise_multiplier: float | None
    noise_std: float
    epsilon: float
    delta: float
    proximal_mu: float = 0.0
    runtime: str = "simulation"
    arrays: dict[int, Arrays] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            "sites": self.sites,
            "rounds": self.rounds,
            "ensemble": self.which,
            "member": self.member,
            "secure_aggregation": self.secure_aggregation,
            "noise_multiplier": self.noise_multiplier,
            "noise_std": self.noise_std,
            "epsilon": None if self.noise_multiplier is None else self.epsilon,
            "delta": None if self.noise_multiplier is None else self.delta,
            "proximal_mu": self.proximal_mu,
            "runtime": self.runtime,
        }


@dataclass(frozen=True)
class ServerSettings:
    """What the server runs: ``rounds`` of FedAvg over ``sites`` sites."""

    rounds: int
    sites: int
    secure_aggregation: bool = True
    #: Gaussian noise multiplier of client-level DP (None: no DP).
    noise_multiplier: float | None = None
    clipping_norm: float = 1.0
    #: SecAgg+ timeout per stage, s (None: wait for every reply).
    timeout: float | None = None


@dataclass
class ServerOutcome:
    """What the server ends with: the global arrays after each round that aggregated
    (round 0: the start)."""

    arrays: dict[int, Arrays] = field(default_factory=dict)
    noise_std: float = 0.0
    aggregated: set[int] = field(default_factory=set)

    @property
    def final(self) -> Arrays:
        return self.arrays[max(self.arrays)]


def noise_std(settings: ServerSettings) -> float:
    """The standard deviation of the noise added to each parameter of the average."""
    if settings.noise_multiplier is None:
        return 0.0
    return settings.noise_multiplier * settings.clipping_norm / settings.sites


def epsilon(noise_multiplier: float, rounds: int, delta: float) -> float:
    """Client-level (epsilon, delta)-DP of ``rounds`` Gaussian releases with every site in
    every round (no sampling amplification): Renyi DP of order a is ``rounds * a / (2 z^2)``
    (Mironov 2017, Prop. 7 composed), converted with ``eps = rdp + log(1/delta) / (a - 1)``
    and minimised over a."""
    if noise_multiplier <= 0:
        return math.inf
    orders = np.concatenate([np.linspace(1.01, 10, 500), np.linspace(10, 1000, 1000)])
    eps = rounds * orders / (2.0 * noise_multiplier**2) + math.log(1.0 / delta) / (orders - 1)
    return float(eps.min())


def make_strategy(settings: ServerSettings, initial: Arrays, outcome: ServerOutcome) -> Strategy:
    """FedAvg over every site from ``initial``; the global arrays of every round land in
    ``outcome`` (through the strategy's evaluate hook: the server has no data to score)."""

    def record(server_round: int, parameters: npt.NDArray[Any] | list[Any], config: Any) -> None:
        if server_round == 0 or server_round in outcome.aggregated:
            outcome.arrays[server_round] = [np.asarray(a, dtype=np.float32) for a in parameters]
        return None

    strategy: Strategy = _RecordingFedAvg(
        outcome,
        fraction_fit=1.0,
        fraction_evaluate=0.0,
        min_fit_clients=settings.sites,
        min_evaluate_clients=0,
        min_available_clients=settings.sites,
        accept_failures=False,
        initial_parameters=ndarrays_to_parameters(initial),
        evaluate_fn=record,
        on_fit_config_fn=lambda server_round: {"server_round": server_round},
        fit_metrics_aggregation_fn=lambda _: {},
    )
    if settings.noise_multiplier is not None:
        strategy = DifferentialPrivacyClientSideFixedClipping(
            strategy, settings.noise_multiplier, settings.clipping_norm, settings.sites
        )
    outcome.noise_std = noise_std(settings)
    return strategy


class _RecordingFedAvg(FedAvg):  # type: ignore[misc]
    """FedAvg that notes the rounds whose aggregation produced parameters."""

    def __init__(self, outcome: ServerOutcome, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._outcome = outcome

    def aggregate_fit(self, server_round: int, results: Any, failures: Any) -> Any:
        params, metrics = super().aggregate_fit(server_round, results, failures)
        if params is not None:
            self._outcome.aggregated.add(server_round)
        return params, metrics


class WatchedGrid(Grid):  # type: ignore[misc]
    """A grid that hands every message the server receives to ``inspect`` first."""

    def __init__(self, inner: Grid, inspect: Callable[[Message], None]) -> None:
        self._inner = inner
        self._inspect = inspect

    def set_run(self, run: Any) -> None:  # pragma: no cover - the runtime sets the inner one
        self._inner.set_run(run)

    @property
    def run(self) -> Any:
        return self._inner.run

    def create_message(self, *args: Any, **kwargs: Any) -> Message:
        return self._inner.create_message(*args, **kwargs)

    def get_node_ids(self) -> Iterable[int]:
        return list(self._inner.get_node_ids())

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        return list(self._inner.push_messages(messages))

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        out = list(self._inner.pull_messages(message_ids))
        for msg in out:
            self._inspect(msg)
        return out

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        out = list(self._inner.send_and_receive(messages, timeout=timeout))
        for msg in out:
            self._inspect(msg)
        return out


def make_server_app(
    settings: ServerSettings,
    initial: Arrays,
    outcome: ServerOutcome,
    inspect: Callable[[Message], None] | None = None,
) -> ServerApp:
    """The ServerApp: ``settings.rounds`` of FedAvg (SecAgg+ unless switched off)."""
    app = ServerApp()

    @app.main()  # type: ignore[untyped-decorator]
    def main(grid: Grid, context: Context) -> None:
        serve_rounds(grid, context, settings, initial, outcome, inspect)

    return app


def serve_rounds(
    grid: Grid,
    context: Context,
    settings: ServerSettings,
    initial: Arrays,
    outcome: ServerOutcome,
    inspect: Callable[[Message], None] | None = None,
) -> None:
    """The body of the ServerApp (simulation and deployment alike): the rounds on ``grid``."""
    if inspect is not None:
        grid = WatchedGrid(grid, inspect)
    legacy = LegacyContext(
        context=context,
        config=ServerConfig(num_rounds=settings.rounds),
        strategy=make_strategy(settings, initial, outcome),
    )
    fit_workflow = None
    if settings.secure_aggregation:
        fit_workflow = SecAggPlusWorkflow(
            num_shares=1.0,  # every site shares its keys with every other
            reconstruction_threshold=0.5,
            max_weight=1.0,
            clipping_range=SECAGG_CLIPPING_RANGE,
            timeout=settings.timeout,
        )
    DefaultWorkflow(fit_workflow=fit_workflow)(grid, legacy)


class SiteClient(NumPyClient):  # type: ignore[misc]
    """A site: trains the global network on its own traces, returns only the arrays."""

    def __init__(self, trainer: SiteTrainer, rounds: int) -> None:
        self.trainer = trainer
        self.rounds = rounds

    def get_parameters(self, config: dict[str, Any]) -> Arrays:
        raise RuntimeError("the server starts from the bundled network; it never asks a site")

    def fit(
        self, parameters: list[npt.NDArray[Any]], config: dict[str, Any]
    ) -> tuple[Arrays, int, dict[str, Any]]:
        server_round = int(config.get("server_round", 1))
        arrays = self.trainer.fit(parameters, server_round, self.rounds)
        return arrays, 1, {}


#: A setting of the ClientApp fixed when it is built, or read from each message's context
#: (a deployment's ClientApp is built before the run's configuration is known).
PerRun = Callable[[Context], Any]


def make_client_app(
    trainer_of: Callable[[Context], SiteTrainer],
    rounds: int | PerRun,
    secure_aggregation: bool | PerRun = True,
    differential_privacy: bool | PerRun = False,
) -> ClientApp:
    """The ClientApp: ``trainer_of(context)`` builds the site's trainer (once per node and
    run, in the process that runs the node)."""

    def client_fn(context: Context) -> Any:
        trainer = cached_trainer((context.run_id, context.node_id), lambda: trainer_of(context))
        total = int(rounds(context)) if callable(rounds) else rounds
        return SiteClient(trainer, total).to_client()

    mods: list[Any] = []
    for mod, on in (
        (secaggplus_mod, secure_aggregation),
        (fixedclipping_mod, differential_privacy),
    ):
        if callable(on):
            mods.append(_only_if(mod, on))
        elif on:
            mods.append(mod)
    return ClientApp(client_fn=client_fn, mods=mods)


def _only_if(mod: Callable[..., Message], on: PerRun) -> Callable[..., Message]:
    def conditional(msg: Message, context: Context, call_next: Callable[..., Message]) -> Message:
        if on(context):
            return mod(msg, context, call_next)
        return call_next(msg, context)

    return conditional


_TRAINERS: dict[tuple[int, int], SiteTrainer] = {}
_TRAINERS_LOCK = threading.Lock()


def cached_trainer(key: tuple[int, int], build: Callable[[], SiteTrainer]) -> SiteTrainer:
    """The trainer of ``key`` in this process, built on first use (a simulation worker
    unpickles the ClientApp for every message; the site's traces are read once)."""
    with _TRAINERS_LOCK:
        trainer = _TRAINERS.get(key)
        if trainer is None:
            trainer = _TRAINERS[key] = build()
        return trainer


def as_arrays(parameters: Sequence[Any]) -> Arrays:
    return [np.asarray(a, dtype=np.float32) for a in parameters]


__all__ = [
    "DELTA",
    "FederationError",
    "FederationResult",
    "ServerOutcome",
    "ServerSettings",
    "SiteClient",
    "WatchedGrid",
    "as_arrays",
    "epsilon",
    "make_client_app",
    "make_server_app",
    "make_strategy",
    "noise_std",
    "serve_rounds",
]
