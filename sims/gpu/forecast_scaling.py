"""Sampling latency of the bundled forecast model against batch size, on one device.

Run on a GPU host to see where the accelerator pays off:
``python sims/gpu/forecast_scaling.py --device cuda``. Prints one JSON object per
batch size: series, context 256, horizon 16, 100 paths, median of 20 calls (after
3 warm-up calls), including the host-to-device copy and the copy of the paths back.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch

from sliceai.forecast import ForecastPipeline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batches", default="64,256,1024,4096,16384")
    args = parser.parse_args()
    pipe = ForecastPipeline.load(device=args.device)
    rng = np.random.default_rng(0)
    for batch in (int(b) for b in args.batches.split(",")):
        context = rng.gamma(2.0, 5e6, size=(batch, 256))
        starts = np.full(batch, 1.7e9)

        def call(context: np.ndarray = context, starts: np.ndarray = starts) -> None:
            pipe.sample(context, 16, 100, start_time=starts, seed=0)
            if torch.cuda.is_available():
                torch.cuda.synchronize()

        for _ in range(3):
            call()
        times = []
        for _ in range(20):
            t0 = time.perf_counter()
            call()
            times.append(time.perf_counter() - t0)
        ms = statistics.median(times) * 1e3
        print(
            json.dumps(
                {
                    "device": str(pipe.device),
                    "series": batch,
                    "median_ms": round(ms, 3),
                    "series_per_s": round(batch / ms * 1e3),
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
