"""Write the bundled checkpoint's regression reference (``tests/forecast/data/*.npz``).

``python research/forecast/make_bundled_reference.py [--out FILE] [--model DIR]``

The quantiles of the bundled model (or ``--model DIR``) at :data:`LEVELS` and horizon
:data:`HORIZON` for a fixed synthetic input (:func:`reference_contexts`: a daily profile
with noise, sessions with idle gaps, an all-zero series, one with gaps of NaN, a flat one)
at a 60 s clock (the main ensemble, with yesterday's window) and a 10 s clock (the fast
ensemble). ``tests/forecast/test_bundled_reference.py`` loads the checkpoint and checks the
same quantiles: moving or refactoring the inference code must not change what the shipped
model forecasts. Rerun this only when the checkpoint itself is rebuilt (``make model``).

Both run the model on :data:`THREADS` torch thread(s). The input keeps every quantile away
from the levels where an idle probability crosses a quantile level: there a quantile moves
by 1e-3 of itself for float differences of 1e-7 in the network's outputs (the thread count,
the CPU's vector instructions), here it stays within 2e-6 on 1 to 4 threads.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

from sliceai.forecast.pipeline import ForecastPipeline

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = ROOT / "tests" / "forecast" / "data" / "bundled_reference.npz"
LEVELS = (0.1, 0.5, 0.9, 0.99)
HORIZON = 16
#: Intervals of history: more than the 60 s clock reads (one day plus half the seasonal
#: window); the 10 s clock reads the last ``context_length`` of them.
LENGTH = 1600
#: Epoch s of the first context interval (a Monday 00:00 UTC), for the calendar features.
START = 1_700_438_400.0
CLOCKS = (60.0, 10.0)
THREADS = 1


def reference_contexts() -> npt.NDArray[np.float64]:
    """``(5, LENGTH)`` bit/s, deterministic."""
    rng = np.random.default_rng(20240527)
    t = np.arange(LENGTH, dtype=np.float64)
    daily = 4e6 * (1.5 + np.sin(2 * np.pi * t / 1440.0)) * rng.lognormal(0.0, 0.2, LENGTH)
    sessions = np.where((t // 80) % 3 != 2, 1e6 * rng.lognormal(0.0, 0.3, LENGTH), 0.0)
    zeros = np.zeros(LENGTH)
    gappy = 8e5 * rng.lognormal(0.0, 0.5, LENGTH)
    gappy[100:400] = np.nan
    gappy[-40:-25] = np.nan
    gappy[-3] = np.nan
    flat = np.full(LENGTH, 1.2e5)
    return np.stack([daily, sessions, zeros, gappy, flat])


def reference_quantiles(
    pipeline: ForecastPipeline, contexts: npt.NDArray[np.float64], interval_s: float
) -> npt.NDArray[np.float32]:
    """``(5, HORIZON, len(LEVELS))`` quantiles of ``pipeline`` at ``interval_s``."""
    return pipeline.quantiles(contexts, HORIZON, LEVELS, start_time=START, interval_s=interval_s)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--model", default=None, help="checkpoint directory (default: bundled)")
    args = parser.parse_args(argv)
    torch.set_num_threads(THREADS)
    pipeline = ForecastPipeline.load(args.model, device="cpu")
    contexts = reference_contexts()
    arrays = {
        f"quantiles_{int(clock)}s": reference_quantiles(pipeline, contexts, clock)
        for clock in CLOCKS
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.out,
        contexts=contexts,
        levels=np.asarray(LEVELS),
        horizon=np.asarray(HORIZON),
        start=np.asarray(START),
        **arrays,
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
