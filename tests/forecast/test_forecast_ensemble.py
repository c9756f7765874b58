"""Seed ensembles: K networks in one checkpoint, read as an equal-weight mixture."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from forecast_configs import SMALL

from sliceai.forecast import ForecastPipeline
from sliceai.forecast.checkpoint import load_model, save_model
from sliceai.forecast.config import ForecastConfig
from sliceai.forecast.errors import ForecastError
from sliceai.forecast.mixture import (
    ForecastEnsemble,
    inverse_shape,
    mixture_cdf,
    mixture_covered,
    mixture_quantiles,
    split_samples,
)
from sliceai.forecast.model import ForecastModel
from sliceai.forecast.training.calibration import build_ensemble
from sliceai.forecast.training.data import sample_windows, synthetic_series

ZERO = dataclasses.replace(SMALL, zero_inflated=True, tail_linear=0.8, tail_cubic=0.05)


def _ensemble(k: int = 3, config: ForecastConfig = ZERO) -> ForecastEnsemble:
    torch.manual_seed(0)
    ens = ForecastEnsemble(dataclasses.replace(config, members=k)).eval()
    with torch.no_grad():  # members that disagree: shifted levels and idle probabilities
        for i, m in enumerate(ens.members):
            assert isinstance(m, ForecastModel)
            m.decoder_out.bias[0] += 0.5 * i
            m.decoder_out.weight[-1].zero_()
            m.decoder_out.bias[-1] = -2.0 + i
    return ens


def _context(batch: int) -> np.ndarray:
    return np.random.default_rng(0).lognormal(np.log(1e6), 0.3, size=(batch, 32))


def test_split_samples_and_the_tail_inverse() -> None:
    assert split_samples(100, 3) == [34, 33, 33]
    assert split_samples(2, 4) == [1, 1, 0, 0]
    z = np.linspace(-6, 6, 101)
    for a, b in ((1.0, 0.0), (0.675, 0.07), (0.6, 0.12)):
        np.testing.assert_allclose(inverse_shape(a * z + b * z**3, a, b), z, atol=1e-9)


def test_mixture_quantiles_match_samples_of_the_mixture() -> None:
    pipe = ForecastPipeline(_ensemble(3), device="cpu")
    levels = (0.05, 0.2, 0.5, 0.8, 0.95, 0.99)
    q = pipe.quantiles(_context(2), 4, levels)
    s = pipe.sample(_context(2), 4, 60000, seed=3)
    assert s.shape == (2, 60000, 4)
    assert s.dtype == np.float32
    emp = np.moveaxis(np.quantile(s, levels, axis=1), 0, -1)
    busy = q > 0
    np.testing.assert_allclose(emp[busy], q[busy], rtol=0.06)
    # Where the mixture quantile is 0 (idle), at least that share of paths is idle.
    for j, lv in enumerate(levels):
        idle = ~busy[..., j]
        assert np.all(np.mean(s == 0, axis=1)[idle] >= lv - 0.01)


def test_one_member_repeated_is_that_member() -> None:
    torch.manual_seed(1)
    single = ForecastModel(ZERO).eval()
    ens = ForecastEnsemble(dataclasses.replace(ZERO, members=3)).eval()
    for m in ens.members:
        m.load_state_dict(single.state_dict())
    levels = (0.01, 0.3, 0.5, 0.9, 0.999)
    want = ForecastPipeline(single, device="cpu").quantiles(_context(3), 4, levels)
    got = ForecastPipeline(ens, device="cpu").quantiles(_context(3), 4, levels)
    np.testing.assert_allclose(got, want, rtol=2e-5)


def test_coverage_counts_what_the_quantiles_bound() -> None:
    rng = np.random.default_rng(0)
    loc = rng.normal(0.5, 1.0, size=(3, 50, 4))
    std = rng.uniform(0.1, 1.0, size=(3, 50, 4))
    p0 = rng.uniform(0.0, 0.4, size=(3, 50, 4))
    y = np.maximum(rng.normal(0.5, 1.5, size=(50, 4)), 0.0)
    a, b = 0.7, 0.06
    q = mixture_quantiles(loc, std, p0, np.array([0.025, 0.975]), a, b)
    inside = (y >= q[..., 0]) & (y <= q[..., 1])
    np.testing.assert_array_equal(mixture_covered(y, loc, std, p0, 0.95, a, b), inside)


@pytest.mark.parametrize(("a", "b"), [(1.0, 0.0), (0.7, 0.06)])
def test_mixture_quantiles_invert_the_mixture_cdf(a: float, b: float) -> None:
    rng = np.random.default_rng(4)
    loc = rng.normal(0.5, 1.0, size=(2, 40, 3))
    std = rng.uniform(0.1, 1.0, size=(2, 40, 3))
    p0 = np.where(rng.random((2, 40, 3)) < 0.5, rng.uniform(0.0, 0.6, (2, 40, 3)), 0.0)
    levels = np.array([0.01, 0.1, 0.5, 0.9, 0.999])
    q = mixture_quantiles(loc, std, p0, levels, a, b)
    cdf, _ = mixture_cdf(q, loc, std, p0, a, b)
    busy = q > 0
    assert busy.any()
    assert (~busy).any()
    np.testing.assert_allclose(cdf[busy], np.broadcast_to(levels, q.shape)[busy], atol=1e-8)
    # A quantile is 0 only where the mass at 0 (idle or below) already reaches the level.
    assert np.all(cdf[~busy] >= np.broadcast_to(levels, q.shape)[~busy] - 1e-12)


def test_ensemble_checkpoint_round_trip_and_old_single_checkpoints(tmp_path: Path) -> None:
    ens = _ensemble(2)
    save_model(ens, tmp_path / "ens", note="x")
    loaded, meta = load_model(tmp_path / "ens")
    assert isinstance(loaded, ForecastEnsemble)
    assert loaded.config.members == 2
    assert meta["note"] == "x"
    for a, b in zip(ens.state_dict().values(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    single = ForecastModel(ZERO)
    save_model(single, tmp_path / "one")
    text = (tmp_path / "one" / "config.json").read_text().replace('"members": 1,', "")
    (tmp_path / "one" / "config.json").write_text(text)  # as written before ensembles
    assert isinstance(load_model(tmp_path / "one")[0], ForecastModel)
    weights = tmp_path / "ens" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ForecastError, match="corrupt"):
        ForecastPipeline.load(tmp_path / "ens", device="cpu")


def test_ensemble_samples_long_horizons_int8_and_no_single_distribution() -> None:
    ens = _ensemble(3)
    pipe = ForecastPipeline(ens, device="cpu")
    long = pipe.sample(_context(2), 11, 7, start_time=1.7e9, seed=0)  # 3 blocks of 4
    assert long.shape == (2, 7, 11)
    assert np.all(np.isfinite(long))
    assert np.all(long >= 0)
    int8 = ForecastPipeline(_ensemble(3), device="cpu", quantize="int8")
    assert len(int8.members) == 3
    q = int8.quantiles(_context(2), 4, (0.1, 0.9))
    assert q.shape == (2, 4, 2)
    assert np.all(q[..., 0] <= q[..., 1])
    with pytest.raises(ForecastError, match="mixture"):
        pipe.distribution(_context(2), 4)
    dists, scale = pipe.distributions(_context(2), 4)
    assert len(dists) == 3
    assert scale.shape == (2,)


def test_build_ensemble_fits_one_tail_and_rejects_other_shapes(tmp_path: Path) -> None:
    dirs = []
    for seed in range(2):
        torch.manual_seed(seed)
        model = ForecastModel(dataclasses.replace(ZERO, tail_linear=1.0 - 0.1 * seed))
        save_model(model, tmp_path / f"m{seed}")
        dirs.append(tmp_path / f"m{seed}")
    series = synthetic_series(4, 400, seed=0)
    windows = sample_windows(series, 256, 32, 4, np.random.default_rng(0), augment=False)
    ens = build_ensemble(dirs, tmp_path / "ens", windows)
    assert ens.config.members == 2
    assert 0.6 <= ens.config.tail_linear <= 1.2
    assert 0.0 <= ens.config.tail_cubic <= 0.12
    assert load_model(tmp_path / "ens")[0].config == ens.config
    save_model(ForecastModel(dataclasses.replace(ZERO, rank=3)), tmp_path / "other")
    with pytest.raises(ForecastError, match="differs"):
        build_ensemble([dirs[0], tmp_path / "other"], tmp_path / "bad", windows)
