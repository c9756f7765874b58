"""The known-law particle filter (``research.forecast.session_filter``): its length law is
the generator's, it tracks the running sessions from the load alone, and its forecasts
sit between EWMA's and the oracle's."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from research.forecast import session_filter as sf
from research.forecast.ensembles import ewma_ensemble
from research.forecast.generator_oracle import oracle_paths, replay_slice
from sliceai.forecast.metrics import crps_ensemble
from sliceai.forecast.scenarios import START_EPOCH_S
from sliceai.traffic.generators import Clock, generate, load_scenario, resolve_slices
from sliceai.traffic.scenario_model import Scenario

CONTEXT = 256


def _one_slice(component: dict[str, object], cap: str | None = None) -> Scenario:
    settings: dict[str, object] = {"name": "s", "components": [component]}
    if cap is not None:
        settings["cap"] = cap
    return Scenario.model_validate({"name": "t", "slices": [settings]})


SESSIONS = {
    "kind": "sessions",
    "per_hour": 4,
    "duration": {"median": "20 min", "sigma": 0.4, "max": "1 h"},
    "rate": {"median": "3 Mbps", "sigma": 0.4},
    "noise": {"sigma": 0.05, "corr": "10 s"},
}


def test_the_filter_tracks_the_running_sessions_and_beats_ewma() -> None:
    """From the load alone the filter infers the sessions' summed rate under the noise
    (half as far from the generator's as the observed load is; idle exactly where the
    generator is), and its forecasts score a CRPS well below EWMA's and above the
    oracle's, which knows the draws."""
    scenario = _one_slice(SESSIONS)
    n, dt = 1440, 60.0
    trace = generate(scenario, start=START_EPOCH_S, n_intervals=n, interval_s=dt, seed=4)
    settings = resolve_slices(scenario)[0]
    clock = Clock(START_EPOCH_S, dt, n + sf.HORIZON, 0.0)
    values = trace.load_bps[:, 0, 0].astype(np.float64)
    law = sf.known_law(settings, clock, 0)

    base = replay_slice(settings, Clock(START_EPOCH_S, dt, n), 4)
    starts, ends, rates = base[0].base.starts, base[0].base.ends, base[0].base.rates
    t = np.arange(n)
    summed = (((starts[None, :] <= t[:, None]) & (t[:, None] < ends[None, :])) * rates).sum(axis=1)
    filt = sf.SessionParticleFilter(law, 1000, np.random.default_rng(0))
    tracked = np.empty(n)
    for i in range(n):
        filt.update(i, float(values[i]))
        w = np.exp(filt.log_w - filt.log_w.max())
        tracked[i] = np.average((filt.rates * filt.on).sum(axis=1), weights=w)
    busy = summed > 0
    assert 0.5 < float(np.mean(busy)) < 0.95  # sessions start and end in the day
    filter_error = np.median(np.abs(tracked[busy] / summed[busy] - 1.0))
    load_error = np.median(np.abs(values[busy] / summed[busy] - 1.0))
    assert filter_error < 0.65 * load_error
    assert np.all(tracked[~busy] == 0.0)

    origins = np.arange(CONTEXT, n - sf.HORIZON + 1, sf.HORIZON)
    targets = sliding_window_view(values, sf.HORIZON)[origins]
    ens = sf.filter_forecasts(values, law, origins, 1000, 100, seed=1)
    oracle = oracle_paths(base, None, 0, origins, 100, np.random.default_rng(2))
    filter_crps = float(crps_ensemble(ens, targets).mean())
    ewma_crps = float(crps_ensemble(ewma_ensemble(values, origins, sf.HORIZON), targets).mean())
    oracle_crps = float(crps_ensemble(oracle, targets).mean())
    assert filter_crps < 0.85 * ewma_crps
    assert oracle_crps < filter_crps


def test_a_clipped_load_keeps_the_filter_on_track() -> None:
    """Where the cap clips the load, the filter weighs the noise's tail beyond it: its
    forecasts stay at or below the cap and still beat EWMA's."""
    scenario = _one_slice(SESSIONS, cap="9 Mbps")
    n, dt = 1440, 60.0
    trace = generate(scenario, start=START_EPOCH_S, n_intervals=n, interval_s=dt, seed=5)
    values = trace.load_bps[:, 0, 0].astype(np.float64)
    assert float(np.mean(values >= 9e6 * (1 - 1e-9))) > 0.05  # the cap binds
    law = sf.known_law(resolve_slices(scenario)[0], Clock(START_EPOCH_S, dt, n + 16), 0)
    origins = np.arange(CONTEXT, n - sf.HORIZON + 1, sf.HORIZON)
    targets = sliding_window_view(values, sf.HORIZON)[origins]
    ens = sf.filter_forecasts(values, law, origins, 1000, 100, seed=1)
    assert float(ens.max()) <= 9e6
    ewma = ewma_ensemble(values, origins, sf.HORIZON)
    assert float(crps_ensemble(ens, targets).mean()) < float(crps_ensemble(ewma, targets).mean())


@pytest.mark.parametrize("slice_name", ["surgery-video", "vitals", "staff-embb"])
def test_slices_the_filter_does_not_model_are_refused(slice_name: str) -> None:
    settings = {s.name: s for s in resolve_slices(load_scenario("hospital"))}[slice_name]
    with pytest.raises(sf.UnsupportedSlice, match=slice_name):
        sf.known_law(settings, Clock(START_EPOCH_S, 10.0, 100), 0)


@pytest.mark.parametrize(
    "change",
    [{"noise": None}, {"noise": {"sigma": 0.1, "corr": "5 min"}}],
    ids=["no-noise", "noise-slower-than-the-clock"],
)
def test_noise_the_filter_cannot_weigh_by_is_refused(change: dict[str, object]) -> None:
    component = {k: v for k, v in {**SESSIONS, **change}.items() if v is not None}
    settings = resolve_slices(_one_slice(component))[0]
    with pytest.raises(sf.UnsupportedSlice, match="noise"):
        sf.known_law(settings, Clock(START_EPOCH_S, 10.0, 100), 0)


def test_the_command_refuses_a_slice_it_does_not_model(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        sf.main(["--slice", "surgery-video", "--days", "0.1", "--particles", "10"])
    assert exc.value.code == 2
    assert "surgery-video: the filter models one" in capsys.readouterr().err
