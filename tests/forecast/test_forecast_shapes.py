"""Output contract: shapes, dtypes, non-negativity and monotone quantiles."""

from __future__ import annotations

import numpy as np
import pytest

from sliceai.forecast import ForecastError, ForecastPipeline


def _context(batch: int, length: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.lognormal(np.log(1e6), 0.3, size=(batch, length))


@pytest.mark.parametrize("horizon", [1, 5, 8, 19])
@pytest.mark.parametrize("n_samples", [1, 37])
def test_sample_shape_dtype(tiny_pipeline: ForecastPipeline, horizon: int, n_samples: int) -> None:
    out = tiny_pipeline.sample(
        _context(3, 40), horizon, n_samples, start_time=[0.0, 1e9, 2e9], seed=1
    )
    assert out.shape == (3, n_samples, horizon)
    assert out.dtype == np.float32
    assert np.all(np.isfinite(out))
    assert np.all(out >= 0)


@pytest.mark.parametrize("levels", [(0.5,), (0.1, 0.5, 0.9), (0.001, 0.01, 0.5, 0.99, 0.999)])
@pytest.mark.parametrize("horizon", [1, 8, 12])
def test_quantiles_shape_monotone(
    tiny_pipeline: ForecastPipeline, levels: tuple[float, ...], horizon: int
) -> None:
    q = tiny_pipeline.quantiles(_context(4, 32), horizon, levels, seed=2)
    assert q.shape == (4, horizon, len(levels))
    assert q.dtype == np.float32
    assert np.all(np.diff(q, axis=-1) >= 0)
    assert np.all(q >= 0)


def test_seed_makes_samples_reproducible(tiny_pipeline: ForecastPipeline) -> None:
    ctx = _context(2, 32)
    a = tiny_pipeline.sample(ctx, 4, 10, seed=5)
    b = tiny_pipeline.sample(ctx, 4, 10, seed=5)
    c = tiny_pipeline.sample(ctx, 4, 10, seed=6)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_exact_quantiles_match_samples(tiny_pipeline: ForecastPipeline) -> None:
    ctx = _context(2, 32)
    q = tiny_pipeline.quantiles(ctx, 4, (0.1, 0.5, 0.9))
    s = tiny_pipeline.sample(ctx, 4, 20000, seed=3)
    emp = np.moveaxis(np.quantile(s, (0.1, 0.5, 0.9), axis=1), 0, -1)
    np.testing.assert_allclose(emp, q, rtol=0.05)


def test_batch_one_dimensional_context(tiny_pipeline: ForecastPipeline) -> None:
    out = tiny_pipeline.sample(_context(1, 32)[0], 3, 4, seed=0)
    assert out.shape == (1, 4, 3)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"horizon": 0}, "horizon"),
        ({"horizon": 2, "n_samples": 0}, "n_samples"),
        ({"horizon": 2, "interval_s": -1.0}, "interval_s"),
        ({"horizon": 2, "start_time": [1.0, 2.0, 3.0]}, "start_time"),
    ],
)
def test_bad_arguments_raise_forecast_error(
    tiny_pipeline: ForecastPipeline, kwargs: dict[str, object], match: str
) -> None:
    with pytest.raises(ForecastError, match=match):
        tiny_pipeline.sample(_context(2, 32), **kwargs)  # type: ignore[arg-type]


def test_bad_levels_raise(tiny_pipeline: ForecastPipeline) -> None:
    with pytest.raises(ForecastError, match="levels"):
        tiny_pipeline.quantiles(_context(1, 32), 2, (0.0, 0.5))
    with pytest.raises(ForecastError, match="context"):
        tiny_pipeline.sample(np.zeros((2, 3, 4)), 2)


def test_tail_shape_keeps_quantiles_and_samples_consistent(tiny_model: object) -> None:
    import dataclasses

    from sliceai.forecast.model import ForecastModel

    assert isinstance(tiny_model, ForecastModel)
    plain = ForecastPipeline(tiny_model, device="cpu")
    tiny_model.config = dataclasses.replace(tiny_model.config, tail_linear=0.8, tail_cubic=0.05)
    shaped = ForecastPipeline(tiny_model, device="cpu")
    ctx = _context(2, 32)
    levels = (0.1, 0.5, 0.9, 0.99)
    q = shaped.quantiles(ctx, 3, levels)
    s = shaped.sample(ctx, 3, 20000, seed=4)
    emp = np.moveaxis(np.quantile(s, levels, axis=1), 0, -1)
    np.testing.assert_allclose(emp, q, rtol=0.05)
    # A sharper body: the 80% band is narrower than the Gaussian one, the median is unchanged.
    q0 = plain.quantiles(ctx, 3, levels)
    np.testing.assert_allclose(q[..., 1], q0[..., 1], rtol=1e-5)
    assert np.all(q[..., 2] - q[..., 0] < q0[..., 2] - q0[..., 0])
