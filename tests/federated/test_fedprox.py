"""FedProx (``LocalOptions.proximal_mu``): the proximal term keeps a site's update near
the global network it started the round from (torch only; no flwr needed)."""

from __future__ import annotations

import numpy as np
import pytest

from sliceai.federated.local import LocalOptions, SiteTrainer, get_arrays, network
from sliceai.forecast.errors import ForecastError
from sliceai.forecast.pipeline import ForecastPipeline
from sliceai.forecast.scenarios import generate_scenario


def _distance(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return float(np.sqrt(sum(float(((x - y) ** 2).sum()) for x, y in zip(a, b, strict=True))))


def test_a_large_proximal_mu_keeps_the_local_update_near_the_global_weights() -> None:
    trace = generate_scenario("hospital", 700, days=1.0, interval_s=60.0)
    pipeline = ForecastPipeline.load(None, device="cpu")
    start = get_arrays(network(pipeline, "main", 0))
    moved = {}
    for mu in (0.0, 100.0):
        opts = LocalOptions(local_steps=6, batch_size=16, seed=3, proximal_mu=mu)
        trainer = SiteTrainer([trace], pipeline, 0, opts)
        moved[mu] = _distance(trainer.fit(start, 1, 2), start)
        # the hooks are gone after fit: the trainer's network trains freely again
        assert all(not p._backward_hooks for p in trainer.net.parameters())
    assert moved[0.0] > 1e-3
    # measured: 0.216 (FedAvg) against 0.042 (mu = 100)
    assert moved[100.0] < 0.5 * moved[0.0]


def test_a_negative_proximal_mu_is_refused() -> None:
    trace = generate_scenario("hospital", 700, days=0.5, interval_s=60.0)
    pipeline = ForecastPipeline.load(None, device="cpu")
    trainer = SiteTrainer([trace], pipeline, 0, LocalOptions(local_steps=1, proximal_mu=-1.0))
    with pytest.raises(ForecastError, match="proximal mu"):
        trainer.fit(get_arrays(network(pipeline, "main", 0)), 1, 1)
