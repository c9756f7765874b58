"""Rebuild the bundled default checkpoint: ``python -m sliceai.forecast.default_model``.

Trains on the ``campus``, ``hospital`` and ``factory`` generators with the
training seeds of :mod:`sliceai.forecast.scenarios` (14 days at 1-minute and
2 x 7 days at 10-second intervals per scenario; the last 15% of every series
validates, with the day of history before it) and writes ``sliceai/data/model/``.
Deterministic on the CPU for a given seed and thread count (one thread by default:
the shipped checkpoint's); about 7 minutes on a quiet machine.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from sliceai.forecast.config import ForecastConfig
from sliceai.forecast.data import series_from_traces
from sliceai.forecast.pipeline import default_checkpoint
from sliceai.forecast.scenarios import TRAINING_SCENARIOS, TRAINING_SEEDS, generate_scenario
from sliceai.forecast.train import STATE_DIR, TrainOptions, train

#: (days, interval_s) of the trace for each training seed: 1-minute and 10-second clocks.
TRAINING_CLOCKS = ((14.0, 60.0), (7.0, 10.0), (7.0, 10.0))
#: Intervals of yesterday's history around the origin that the model reads.
SEASONAL_WINDOW = 128
#: Torch threads: the float sums (so the weights) depend on it. The shipped checkpoint
#: was trained on one thread; a 2-thread build of the same recipe scored +13.5% / +8.1%
#: against the best baseline on the held-out 60 s / 10 s clocks, the 1-thread one +14.0%
#: / +10.3%: the margin is within run-to-run spread.
TRAINING_THREADS = 1


def build(
    out: Path,
    epochs: int = 60,
    seed: int = 0,
    threads: int = TRAINING_THREADS,
    seasonal_window: int = SEASONAL_WINDOW,
) -> float:
    """Train the default model into ``out``; returns the best validation CRPS."""
    torch.set_num_threads(threads)
    # Each scenario with its own seeds (campus shares slice generators with the others,
    # so equal seeds would repeat the same traffic).
    specs = [
        (name, 10 * k + s, days, interval)
        for k, name in enumerate(TRAINING_SCENARIOS)
        for s, (days, interval) in zip(TRAINING_SEEDS, TRAINING_CLOCKS, strict=True)
    ]
    traces = [generate_scenario(name, s, days, interval) for name, s, days, interval in specs]
    config = ForecastConfig(seasonal_window=seasonal_window, zero_inflated=True)
    pairs = [
        s.split(0.85, history=config.history_length(s.interval_s))
        for s in series_from_traces(traces)
    ]
    result = train(
        [a for a, _ in pairs],
        [b for _, b in pairs],
        out,
        config=config,
        options=TrainOptions(
            epochs=epochs,
            steps_per_epoch=200,
            patience=15,
            learning_rate=2e-3,
            seed=seed,
            device="cpu",
        ),
        metadata={"trained_on": [f"{n}:{s}:{d:g} days at {i:g} s" for n, s, d, i in specs]},
    )
    state = out / STATE_DIR
    if state.is_dir():
        for f in state.iterdir():
            f.unlink()
        state.rmdir()
    return result.best_val_crps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=default_checkpoint())
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=TRAINING_THREADS)
    parser.add_argument("--seasonal-window", type=int, default=SEASONAL_WINDOW)
    args = parser.parse_args(argv)
    crps = build(args.out, args.epochs, args.seed, args.threads, args.seasonal_window)
    print(f"default model written to {args.out} (validation CRPS {crps:.4f})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
