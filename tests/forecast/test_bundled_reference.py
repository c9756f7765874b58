"""The bundled checkpoint forecasts what it did when the reference was recorded.

``tests/forecast/data/bundled_reference.npz`` holds the bundled model's quantiles for a
fixed input at a 60 s clock (the main ensemble) and a 10 s clock (the fast one), written
by ``research/forecast/make_bundled_reference.py`` before the forecast package was
reorganised; refactoring the inference code must leave them unchanged. Rebuilding the
checkpoint (``make model``) needs a new reference. Both run on one torch thread (the
float sums depend on the thread count: within 1e-5 of each other on 1 to 4 threads).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from sliceai.forecast import ForecastPipeline

REFERENCE = Path(__file__).parent / "data" / "bundled_reference.npz"


@pytest.fixture(scope="module")
def bundled() -> ForecastPipeline:
    return ForecastPipeline.load(None, device="cpu")


@pytest.fixture
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("clock", [60, 10])
def test_bundled_quantiles_match_the_reference(bundled: ForecastPipeline, clock: int) -> None:
    ref = np.load(REFERENCE)
    got = bundled.quantiles(
        ref["contexts"],
        int(ref["horizon"]),
        ref["levels"],
        start_time=float(ref["start"]),
        interval_s=float(clock),
    )
    expected = ref[f"quantiles_{clock}s"]
    assert got.shape == expected.shape
    # An all-zero context forecasts exactly 0; the rest match to float32 rounding.
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-3)
    assert np.all(got[2] == 0.0)
