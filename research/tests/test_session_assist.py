"""The model pooled with the session filter where that scored better (``session_assist``)."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from research.forecast.ensembles import ewma_ensemble
from research.forecast.session_assist import (
    MIN_SCORED,
    SessionOptions,
    choose_online,
    with_sessions,
)
from research.tests.session_traces import SPARSE, sessions_load
from sliceai.forecast.metrics import crps_ensemble
from sliceai.forecast.scenarios import START_EPOCH_S

H = 16


def _sparse_values(n: int, seed: int) -> np.ndarray:
    return sessions_load(SPARSE, n, seed)


def test_the_online_choice_follows_the_recent_scores() -> None:
    """The pool scores better for 40 origins, then worse: the choice takes it once
    MIN_SCORED origins show it ahead and drops it when the window shows it behind."""
    origins = np.arange(100) * H
    model = np.ones(100)
    pool = np.where(np.arange(100) < 40, 0.5, 1.5)
    chosen = choose_online(pool, model, origins, H, 10)
    assert not chosen[:MIN_SCORED].any()  # too little evidence yet
    assert chosen[MIN_SCORED:40].all()
    assert not chosen[46:].any()  # from 46 on the last 10 origins hold > 5 bad ones


def test_the_choice_reads_only_targets_that_have_ended() -> None:
    """Origins 4 intervals apart with a 16-interval horizon: at origin j the targets of
    j-3 .. j-1 are still running, so the window ends at j-4."""
    origins = np.arange(100) * 4
    model = np.ones(100)
    pool = np.where(np.arange(100) >= 50, 0.5, 1.5)
    chosen = choose_online(pool, model, origins, H, 5)
    assert not chosen[55]  # the ended window [47, 52) holds three bad origins
    assert chosen[58]  # [50, 55): all good


def test_the_choice_waits_for_origins_the_filter_forecast() -> None:
    """Origins without a filter forecast (the pool is the model there) are no evidence:
    the choice waits for MIN_SCORED pooled ones."""
    origins = np.arange(40) * H
    pooled = np.arange(40) >= 20
    model = np.ones(40)
    pool = np.where(pooled, 0.5, 1.0)
    chosen = choose_online(pool, model, origins, H, 90, pooled)
    assert not chosen[: 20 + MIN_SCORED].any()
    assert chosen[20 + MIN_SCORED :].all()


def test_a_law_fitted_late_runs_the_past_through() -> None:
    """Silent for the first day, sessions from the second: no law fits at the first
    origin, one fits later, and only origins after it are pooled."""
    n = 17_280
    values = _sparse_values(n, seed=14)
    values[: n // 2] = 0.0
    origins = np.arange(256, n - H + 1, H)
    stand_in = ewma_ensemble(values, origins, H)
    out, used = with_sessions(
        stand_in, values, origins, H, START_EPOCH_S, 10.0, SessionOptions(particles=300)
    )
    assert used.any()
    assert not used[origins < n // 2].any()
    assert np.array_equal(out[~used], stand_in[~used])


def test_the_assist_beats_its_stand_in_model_on_a_sessions_series() -> None:
    """EWMA stands in for the model on two days of sparse sessions: pooled with the
    filter where that has scored better, the forecast's CRPS drops below EWMA's."""
    n = 17_280
    values = _sparse_values(n, seed=11)
    origins = np.arange(256, n - H + 1, H)
    stand_in = ewma_ensemble(values, origins, H)  # (n, H, members)
    out, used = with_sessions(
        stand_in, values, origins, H, START_EPOCH_S, 10.0, SessionOptions(particles=300)
    )
    targets = sliding_window_view(values, H)[origins]
    assert used.sum() > 0.2 * len(origins)
    assert not used[:MIN_SCORED].any()
    assert np.array_equal(out[~used], stand_in[~used])
    assisted, alone = crps_ensemble(out, targets).mean(), crps_ensemble(stand_in, targets).mean()
    assert assisted < 0.9 * alone


def test_no_load_after_an_origin_shapes_its_forecast() -> None:
    """Changing every load from an origin on leaves the forecasts at and before it as
    they were (same seed): the filter reads the past only, the choice ended targets."""
    n = 8_640
    values = _sparse_values(n, seed=12)
    origins = np.arange(256, n - H + 1, H)
    stand_in = ewma_ensemble(values, origins, H)
    opts = SessionOptions(particles=200)
    out, used = with_sessions(stand_in, values, origins, H, START_EPOCH_S, 10.0, opts)
    j = len(origins) * 3 // 4
    changed = values.copy()
    changed[origins[j] :] *= 3.0
    stand_in2 = stand_in.copy()
    stand_in2[j + 1 :] *= 3.0  # the stand-in may change only after origin j
    out2, used2 = with_sessions(stand_in2, changed, origins, H, START_EPOCH_S, 10.0, opts)
    assert used[: j + 1].any()  # the check covers pooled forecasts
    assert np.array_equal(used[: j + 1], used2[: j + 1])
    assert np.array_equal(out[: j + 1], out2[: j + 1])


def test_a_series_without_sessions_keeps_the_model() -> None:
    values = np.zeros(4000)
    origins = np.arange(256, 4000 - H + 1, H)
    model = np.random.default_rng(0).random((len(origins), H, 20))
    out, used = with_sessions(model, values, origins, H, START_EPOCH_S, 10.0, SessionOptions())
    assert not used.any()
    assert out is model


@pytest.mark.parametrize("bad", [{"particles": 1}, {"window": 2}])
def test_bad_session_options_are_refused(bad: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="particles must be at least 2"):
        SessionOptions(**bad)
