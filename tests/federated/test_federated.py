"""Federated training with Flower: two simulated sites, SecAgg+ on.

The server's grid is watched (:class:`sliceai.federated.audit.MessageAudit`): every
message it receives must hold only the SecAgg+ protocol's keys and masked vectors of the
network's parameter shapes, and no 32-byte run of either site's raw trace. The aggregate
the server ends a round with must be the mean of what the two sites trained (computed
here again from the same seeds), so the masks cancel and nothing else was added.
"""

from __future__ import annotations

import gc
import warnings
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("flwr")

from flwr.app import ArrayRecord, RecordDict

from sliceai.federated.audit import MessageAudit
from sliceai.federated.local import (
    LocalOptions,
    SiteTrainer,
    get_arrays,
    network,
    parameter_shapes,
    read_traces,
)
from sliceai.federated.simulate import Site, simulate
from sliceai.forecast.checkpoint import load_model
from sliceai.forecast.pipeline import ForecastPipeline
from sliceai.forecast.scenarios import generate_scenario
from sliceai.traffic.longcsv import write_long_csv

pytestmark = [
    pytest.mark.federated,
    # Ray's own start-up leaves /dev/null handles and raylet Popen objects to the GC.
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]

LOCAL = LocalOptions(local_steps=2, batch_size=16, seed=5)


def _sites(tmp_path: Path) -> list[Site]:
    out = []
    for k, name in enumerate(("hospital", "factory")):
        path = tmp_path / f"{name}.csv"
        write_long_csv(generate_scenario(name, 700 + k, days=1.0, interval_s=60.0), path)
        out.append(Site(name, (path,)))
    return out


def _canaries(sites: list[Site]) -> list[bytes]:
    """32-byte runs (4 float64 values and 8 float32 ones) of each site's busiest column."""
    out = []
    for site in sites:
        load = read_traces(site.traces)[0].load_bps
        col = load.reshape(len(load), -1)[
            :, int(np.nanargmax(np.nanmean(load.reshape(len(load), -1), axis=0)))
        ]
        for start in range(0, len(col) - 8, 97):
            out.append(col[start : start + 4].astype(np.float64).tobytes())
            out.append(col[start : start + 8].astype(np.float32).tobytes())
    return out


class _Received:
    """A message as the server receives it (a real Message needs a running federation)."""

    def __init__(self, content: RecordDict) -> None:
        self.content = content
        self.error = None

    def has_error(self) -> bool:
        return False

    def has_content(self) -> bool:
        return True


def test_audit_flags_what_is_not_a_parameter() -> None:
    pipeline = ForecastPipeline.load(None, device="cpu")
    shapes = parameter_shapes(network(pipeline, "main", 0))
    trace = np.arange(1.0, 65.0)
    audit = MessageAudit(shapes, canaries=[trace[:4].tobytes()])
    leak = RecordDict({"fitres.parameters": ArrayRecord([trace])})
    audit(_Received(leak))  # type: ignore[arg-type]
    assert any("shapes" in v for v in audit.violations)
    assert any("raw trace" in v for v in audit.violations)
    clean = MessageAudit(shapes)
    arrays = get_arrays(network(pipeline, "main", 0))
    clean(_Received(RecordDict({"fitres.parameters": ArrayRecord(arrays)})))  # type: ignore[arg-type]
    assert clean.violations == []
    assert clean.parameter_sets == 1


def test_two_sites_secure_aggregation_only_masked_parameters(tmp_path: Path) -> None:
    sites = _sites(tmp_path)
    pipeline = ForecastPipeline.load(None, device="cpu")
    start = get_arrays(network(pipeline, "main", 0))
    audit = MessageAudit(parameter_shapes(network(pipeline, "main", 0)), canaries=_canaries(sites))
    result = simulate(sites, rounds=2, out=tmp_path / "model", local=LOCAL, inspect=audit)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()  # Ray's leftovers, while the warning is ignored

    assert audit.violations == []
    assert audit.masked_vectors == 2 * 2  # each site, each round
    assert audit.parameter_sets == 0  # never a plain parameter set
    assert sorted(result.arrays) == [0, 1, 2]

    # Round 1's aggregate is the mean of the two sites' training from the start (the
    # masks cancel; SecAgg+ quantizes to steps of 7.6e-6).
    trained = [
        SiteTrainer(read_traces(s.traces), pipeline, 0, LOCAL).fit(start, 1, 2) for s in sites
    ]
    for agg, a, b, _s0 in zip(result.arrays[1], *trained, start, strict=True):
        np.testing.assert_allclose(agg, (a + b) / 2, atol=5e-5)
    moved = max(float(np.abs(a - s).max()) for a, s in zip(result.arrays[2], start, strict=True))
    assert moved > 1e-4

    model, meta = load_model(tmp_path / "model")
    assert model.config.members == 5  # the federated network joined to the bundled four
    assert meta["federated"]["secure_aggregation"] is True
    tuned = ForecastPipeline.load(tmp_path / "model", device="cpu")
    q = tuned.quantiles(np.full((1, 64), 1e6), 4, np.array([0.1, 0.5, 0.9]), interval_s=60.0)
    assert np.all(np.isfinite(q))
    assert np.all(np.diff(q, axis=-1) >= 0)


@pytest.mark.slow
def test_client_level_dp_adds_the_reported_noise(tmp_path: Path) -> None:
    """With --dp-noise the server adds Gaussian noise of std z * C / sites to the average:
    the sites' clipped updates are far smaller, so the aggregate moves by about that std."""
    sites = _sites(tmp_path)
    start = get_arrays(network(ForecastPipeline.load(None, device="cpu"), "main", 0))
    result = simulate(
        sites, rounds=1, out=tmp_path / "dp", local=LOCAL, noise_multiplier=1.0, clipping_norm=0.1
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
    assert result.noise_std == pytest.approx(1.0 * 0.1 / 2)
    assert 0 < result.epsilon < float("inf")
    moved = np.concatenate([(a - s).ravel() for a, s in zip(result.arrays[1], start, strict=True)])
    # the clipped updates (norm <= 0.1 over all parameters) add next to nothing per parameter
    assert float(moved.std()) == pytest.approx(result.noise_std, rel=0.1)
    _, meta = load_model(tmp_path / "dp")
    assert meta["federated"]["noise_multiplier"] == 1.0
    assert meta["federated"]["noise_std"] == pytest.approx(0.05)
