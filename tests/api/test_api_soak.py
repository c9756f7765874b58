"""A short, bounded soak (issue #29): one honest controller keeps getting plans while hostile
callers over mutual TLS on loopback flood forecasts, hog watch streams, open Hello-less
Connects, invent telemetry sources and churn grants; the limits are what stop them.
``make soak`` runs the long version (:mod:`sims.soak`)."""

from __future__ import annotations

import time
from pathlib import Path

from sims.pki import make_pki
from sims.soak.load import IDENTITIES, Honest, Hostile
from sliceai.api.bench import synthetic_policy
from sliceai.api.limits import Limits
from sliceai.api.server import ServerSettings, SliceaiServer, TlsFiles
from sliceai.engine import Engine, EngineSettings, StateStore
from sliceai.planning import RollingQuantileForecaster

SLICES = 16
INTERVAL_S = 0.25
LOAD_S = 4.0


def test_short_soak_controllers_keep_getting_plans(tmp_path: Path) -> None:
    pki = make_pki(tmp_path, IDENTITIES)
    limits = Limits(hello_timeout_s=0.5, sources_per_identity=16, replan_min_gap_s=0.5)
    store = StateStore(tmp_path / "soak.db")
    engine = Engine(
        store,
        synthetic_policy(SLICES),
        RollingQuantileForecaster(),
        settings=EngineSettings(interval_s=INTERVAL_S, limits=limits),
    )
    tls = TlsFiles(pki.server_cert, pki.server_key, pki.ca)
    server = SliceaiServer(engine, ServerSettings("127.0.0.1:0", tls))
    server.start()
    target = f"127.0.0.1:{server.port}"
    names = tuple(f"s{i:03d}" for i in range(SLICES))
    honest = Honest(target, pki, names, INTERVAL_S)
    hostile = Hostile(target, pki, 0.25, names)
    try:
        honest.start()
        time.sleep(1.0)
        first = engine.hub.latest
        assert first is not None
        started = time.monotonic()
        hostile.start()
        time.sleep(LOAD_S)
        until = time.monotonic()
        hostile.stop()
        last = engine.hub.latest
        assert last is not None
    finally:
        honest.stop()
        server.stop(grace_s=0.5)
        store.close()
    assert not honest.errors
    # plans kept coming: the timer alone makes one per interval; allow a busy machine half
    assert honest.plans_per_s(started, until) >= 0.5 / INTERVAL_S
    gaps = [b - a for a, b in zip(honest.plan_times, honest.plan_times[1:], strict=False)]
    assert max(gaps) < 2.0
    # the grant churn did not turn into a plan per change: at most the timer's, the
    # end-of-period's and the coalesced replans' share
    assert hostile.attempts["grants"] > 0
    made = last.version - first.version
    assert made <= (until - started + 1.0) * (1 / (0.25 * INTERVAL_S) + 1 / 0.5) + 2
    hits = engine.limit_hits
    for limit in ("request_bytes", "streams_per_identity", "sources_per_identity"):
        assert hits.count(limit) > 0, (limit, hits.counts)
    assert hostile.attempts["hello"] > 0
    assert hostile.attempts["watch"] > 0
