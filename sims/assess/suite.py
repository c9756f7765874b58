"""The assessment suite: traces no setting was chosen on, for ``sliceai assess``.

``python -m sims.assess.suite --out DIR`` writes, for each bundled policy (hospital,
factory, campus), long-CSV traces of

- the bundled scenario on seeds never used for training, for the held-out forecast
  scores or for choosing settings (:data:`BUNDLED_SEEDS`), and
- the independently written held-out family (:mod:`sims.heldout`),

each without and with a x1.4 regime step half-way, at 10 s (:data:`DAYS_10S` days)
and at 1 s (:data:`HOURS_1S` hours), plus ``manifest.txt`` (one ``TRACE POLICY`` line
each). ``make assess`` runs ``sliceai assess`` over them and writes BENCHMARKS.md's
"assessment" section. Nothing here is used to train a model or to choose a setting.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sims.heldout.family import generate_heldout_trace
from sliceai.forecast.scenarios import START_EPOCH_S, generate_scenario
from sliceai.policy.bundled import bundled_policy_path
from sliceai.traffic import Trace
from sliceai.traffic.longcsv import write_long_csv

POLICIES = ("hospital", "factory", "campus")
#: Seeds of the bundled scenarios here: training used < 1000, the held-out forecast
#: scores 1001-1004, the dev traces 2001-2004.
BUNDLED_SEEDS = {"hospital": 3001, "factory": 3002, "campus": 3003}
#: Seeds of the held-out family.
HELDOUT_SEEDS = {"hospital": 4001, "factory": 4002, "campus": 4003}
STEP = 1.4
DAYS_10S = 2.0
HOURS_1S = 6.0


@dataclass(frozen=True)
class SuiteTrace:
    name: str
    policy: str
    trace: Trace


def stepped(trace: Trace, factor: float, at_fraction: float = 0.5) -> Trace:
    """``trace`` with every slice's load times ``factor`` from ``at_fraction`` on."""
    load = trace.load_bps.copy()
    load[int(at_fraction * trace.n_intervals) :] *= factor
    return Trace(trace.start, trace.interval_s, trace.slices, load)


def suite(days_10s: float = DAYS_10S, hours_1s: float = HOURS_1S) -> Iterator[SuiteTrace]:
    """Every trace of the suite, generated on the fly."""
    for interval, days in ((10.0, days_10s), (1.0, hours_1s / 24.0)):
        clock = f"{interval:g}s"
        n = round(days * 86400.0 / interval)
        for policy in POLICIES:
            bundled = generate_scenario(policy, BUNDLED_SEEDS[policy], days, interval)
            heldout = generate_heldout_trace(
                bundled_policy_path(f"{policy}.yaml"),
                seed=HELDOUT_SEEDS[policy],
                n_intervals=n,
                interval_s=interval,
                start=START_EPOCH_S,
            )
            for family, trace in (("bundled", bundled), ("heldout", heldout)):
                yield SuiteTrace(f"{policy}-{family}-{clock}", policy, trace)
                yield SuiteTrace(f"{policy}-{family}-{clock}-step", policy, stepped(trace, STEP))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the traces")
    parser.add_argument("--days-10s", type=float, default=DAYS_10S)
    parser.add_argument("--hours-1s", type=float, default=HOURS_1S)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    lines = []
    for item in suite(args.days_10s, args.hours_1s):
        path = args.out / f"{item.name}.csv"
        write_long_csv(item.trace, path)
        policy = bundled_policy_path(f"{item.policy}.yaml").resolve()
        lines.append(f"{path.name} {policy}")  # the trace relative to the manifest
        mean = np.nanmean(item.trace.load_bps)
        print(
            f"{path}: {item.trace.n_intervals} x {item.trace.interval_s:g} s, mean {mean:.3g} bit/s"
        )
    (args.out / "manifest.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
