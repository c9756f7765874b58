"""How much better than EWMA can any forecaster be on the evaluation traces? A Monte Carlo oracle.

Issue #5 asks for a CRPS 15% below the best baseline's on the held-out traces.
The traces come from the bundled generators, so the best possible forecast is
known: the generator's own law of the future given everything it has drawn so
far (:mod:`research.forecast.generator_oracle` replays the generator with its latent state and
samples that law).

An oracle that knows at least as much as the history reveals scores a lower
expected CRPS than any forecaster that sees the history only, so its gain over
EWMA bounds every model's gain from above. The scores follow ``make evaluate``:
horizon 16, a forecast every 16 intervals from the same origins, fair CRPS over
each series' mean load, averaged over series.

    python -m research.forecast.oracle [--interval 60 10] [--held-out] [--model bundled] [--by-step]
        [--paths 200] [--markdown BENCHMARKS.md] [--model-family]

``make oracle`` scores the held-out traces with the bundled model and writes the
"forecast oracle bound" section of BENCHMARKS.md (about 5 minutes).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tabulate import tabulate
from tqdm import tqdm  # type: ignore[import-untyped, unused-ignore]

from research.forecast.ensembles import ewma_ensemble, model_paths
from research.forecast.generator_oracle import (
    CONTEXT,
    HORIZON,
    evaluation_origins,
    oracle_paths,
    reconstruct,
    replay_slice,
    scored_directions,
)
from research.forecast.traces import DEV, HELD_OUT
from sliceai.forecast.features import SCALE_FLOOR_BPS
from sliceai.forecast.metrics import crps_ensemble
from sliceai.forecast.scenarios import START_EPOCH_S
from sliceai.traffic import DIRECTION_NAMES
from sliceai.traffic.generators import Clock, generate, load_scenario, resolve_slices

ORIGIN_CHUNK = 256
SECTION = "forecast-oracle"
#: The issue's target: CRPS this far below the best baseline's.
TARGET = 0.15


@dataclass
class SeriesScore:
    """CRPS over the series' mean load, per forecast step ``(HORIZON,)``."""

    trace: str
    slice: str
    direction: str
    ewma_steps: np.ndarray
    oracle_steps: np.ndarray
    model_steps: np.ndarray | None

    @property
    def ewma(self) -> float:
        return float(self.ewma_steps.mean())

    @property
    def oracle(self) -> float:
        return float(self.oracle_steps.mean())

    @property
    def model(self) -> float | None:
        return None if self.model_steps is None else float(self.model_steps.mean())


def context_means(values: np.ndarray, origins: np.ndarray) -> np.ndarray:
    """``(len(origins),)`` the mean of the :data:`CONTEXT` values before each origin: the
    scale of the model's log space (``sliceai.forecast.features``), floored as there."""
    csum = np.concatenate([[0.0], np.cumsum(values)])
    lo = np.maximum(origins - CONTEXT, 0)
    means = (csum[origins] - csum[lo]) / np.maximum(origins - lo, 1)
    out: np.ndarray = np.maximum(means, SCALE_FLOOR_BPS)
    return out


def project_to_model_family(
    paths: np.ndarray, scales: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """``paths`` ``(origins, horizon, n)`` redrawn, per origin and step, from the model's
    marginal family fitted by moments: idle (0) with the paths' idle share, otherwise a
    Gaussian in ``log1p(x / scale)`` with the busy paths' mean and standard deviation.
    What the oracle scores so is what its law is worth to a forecaster of that family."""
    s = scales[:, None, None]
    busy = paths > 0
    count = busy.sum(axis=-1, keepdims=True)
    y = np.log1p(np.maximum(paths, 0.0) / s)
    mean = np.where(busy, y, 0.0).sum(axis=-1, keepdims=True) / np.maximum(count, 1)
    var = np.where(busy, (y - mean) ** 2, 0.0).sum(axis=-1, keepdims=True)
    std = np.sqrt(var / np.maximum(count - 1, 1))
    drawn = np.expm1(mean + std * rng.standard_normal(paths.shape)) * s
    idle = rng.random(paths.shape) >= count / paths.shape[-1]
    out: np.ndarray = np.where(idle, 0.0, np.maximum(drawn, 0.0))
    return out


def score_trace(
    name: str,
    seed: int,
    interval_s: float,
    days: float,
    paths: int,
    pipe: Any | None,
    model_family: bool = False,
) -> list[SeriesScore]:
    """Oracle, EWMA (and model) scores of every non-zero series of one trace; with
    ``model_family`` the oracle's paths projected by :func:`project_to_model_family`."""
    scenario = load_scenario(name)
    n = round(days * 86400.0 / interval_s)
    trace = generate(scenario, start=START_EPOCH_S, n_intervals=n, interval_s=interval_s, seed=seed)
    clock = Clock(START_EPOCH_S, interval_s, n, scenario.utc_offset_h)
    rng = np.random.default_rng(seed)
    out = []
    for i, settings in enumerate(resolve_slices(scenario)):
        states = replay_slice(settings, clock, seed)
        load = trace.load_bps[:, i].astype(np.float64)
        if not np.allclose(reconstruct(states, settings.cap), load, rtol=1e-9, atol=1e-6):
            raise RuntimeError(f"{name}/{settings.name}: the replay does not match the generator")
        origins = evaluation_origins(n, interval_s)
        for d, values, targets, scale in scored_directions(load, origins):
            direction = DIRECTION_NAMES[d]
            ewma = crps_ensemble(ewma_ensemble(values, origins, HORIZON), targets)
            scales = context_means(values, origins)
            chunks = []
            for k in range(0, len(origins), ORIGIN_CHUNK):
                at = slice(k, k + ORIGIN_CHUNK)
                ens = oracle_paths(states, settings.cap, d, origins[at], paths, rng)
                if model_family:
                    ens = project_to_model_family(ens, scales[at], rng)
                chunks.append(crps_ensemble(ens, targets[at]))
            oracle = np.concatenate(chunks)
            model = None
            if pipe is not None:
                ens = model_paths(pipe, trace, values, origins, HORIZON)
                model = crps_ensemble(np.moveaxis(ens, 1, -1), targets).mean(axis=0) / scale
            out.append(
                SeriesScore(
                    scenario.name,
                    settings.name,
                    direction,
                    ewma.mean(axis=0) / scale,
                    oracle.mean(axis=0) / scale,
                    model,
                )
            )
    return out


def _gain(method: float, ewma: float) -> str:
    return f"{100.0 * (1.0 - method / ewma):+.1f}%"


def _mean(values: list[float | None]) -> float:
    return float(np.mean([v for v in values if v is not None]))


#: Forecast steps (1-based) that ``--by-step`` shows.
SHOWN_STEPS = (1, 2, 4, 8, 16)


def step_table(scores: list[SeriesScore]) -> str:
    """Per slice, the oracle's (and the model's) gain over EWMA at :data:`SHOWN_STEPS`."""
    per_slice: dict[str, list[SeriesScore]] = {}
    for s in scores:
        per_slice.setdefault(s.slice, []).append(s)
    idx = [k - 1 for k in SHOWN_STEPS]
    rows = []
    for name, group in sorted(per_slice.items()):
        e = np.mean([s.ewma_steps for s in group], axis=0)[idx]
        o = np.mean([s.oracle_steps for s in group], axis=0)[idx]
        row = [name, " ".join(f"{100 * (1 - a / b):+.0f}" for a, b in zip(o, e, strict=True))]
        models = [s.model_steps for s in group if s.model_steps is not None]
        if models:
            m = np.mean(models, axis=0)[idx]
            row.append(" ".join(f"{100 * (1 - a / b):+.0f}" for a, b in zip(m, e, strict=True)))
        rows.append(row)
    steps = ", ".join(str(k) for k in SHOWN_STEPS)
    headers = ["slice", f"oracle vs EWMA at steps {steps} (%)"]
    headers += [f"model vs EWMA at steps {steps} (%)"] if len(rows[0]) > 2 else []
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def report(scores: list[SeriesScore], interval_s: float, by_step: bool = False) -> str:
    """Markdown for one clock: the scores averaged as ``make evaluate`` averages them
    (CRPS over each series' mean load, mean over series), then per slice."""
    have_model = all(s.model is not None for s in scores)
    ewma = _mean([s.ewma for s in scores])
    oracle = _mean([s.oracle for s in scores])
    headers = ["series", "EWMA", "oracle", "oracle vs EWMA"]
    row: list[object] = [len(scores), f"{ewma:.4f}", f"{oracle:.4f}", _gain(oracle, ewma)]
    if have_model:
        model = _mean([s.model for s in scores])
        headers += ["model", "model vs EWMA", "model's share of the oracle's gain"]
        row += [f"{model:.4f}", _gain(model, ewma), f"{(ewma - model) / (ewma - oracle):.0%}"]
    need = TARGET * ewma / (ewma - oracle)
    lines = [
        f"### {interval_s:g} s intervals",
        "",
        tabulate([row], headers=headers, tablefmt="github", disable_numparse=True),
        "",
        f"A CRPS {TARGET:.0%} below EWMA's takes {need:.0%} of the oracle's gain here.",
        "",
    ]
    per_slice: dict[str, list[SeriesScore]] = {}
    for s in scores:
        per_slice.setdefault(s.slice, []).append(s)
    rows = []
    for name, group in sorted(per_slice.items()):
        e = _mean([s.ewma for s in group])
        r: list[object] = [name, len(group), f"{e:.4f}", _gain(_mean([s.oracle for s in group]), e)]
        if have_model:
            r.append(_gain(_mean([s.model for s in group]), e))
        rows.append(r)
    slice_headers = ["slice", "series", "EWMA", "oracle vs EWMA"]
    slice_headers += ["model vs EWMA"] if have_model else []
    lines.append(tabulate(rows, headers=slice_headers, tablefmt="github", disable_numparse=True))
    if by_step:
        lines += ["", step_table(scores)]
    return "\n".join(lines)


def render_markdown(sections: list[str], argv: list[str], model: str | None, held_out: bool) -> str:
    """The BENCHMARKS.md section, with its markers."""
    from sliceai.bench.report import machine_description

    today = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    head = [
        f"<!-- bench:{SECTION}:start -->",
        "## forecast oracle bound (" + ("held-out" if held_out else "dev") + " traces)",
        "",
        f"- command: `python -m research.forecast.oracle {' '.join(argv)}` (`make oracle`; not "
        "rewritten by `make bench`)",
        f"- machine: {machine_description()}",
        f"- date: {today}",
        f"- model: {model or 'none'}",
        "- oracle: the generator's own law of the next 16 intervals given everything it has "
        "drawn so far (running sessions and their age, noise states, regimes); no forecaster "
        "that reads the history only can expect a lower CRPS, so its gain over EWMA bounds "
        "every model's. Scored as `make evaluate` scores (CRPS over each series' mean load, "
        "averaged over series; the same origins)",
        "",
    ]
    return "\n".join([*head, "\n\n".join(sections), f"<!-- bench:{SECTION}:end -->"]) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--interval", type=float, nargs="+", default=[60.0, 10.0], help="clocks, seconds"
    )
    parser.add_argument("--days", type=float, default=7.0)
    parser.add_argument("--paths", type=int, default=200, help="oracle sample paths per origin")
    parser.add_argument(
        "--held-out", action="store_true", help="the held-out traces (default: dev)"
    )
    parser.add_argument(
        "--model", default=None, help="also score a checkpoint ('bundled' or a directory)"
    )
    parser.add_argument(
        "--by-step", action="store_true", help="also each slice's gains by forecast step"
    )
    parser.add_argument(
        "--model-family",
        action="store_true",
        help="score the oracle projected onto the model's marginal family (idle share plus "
        "a Gaussian in log1p(x / scale) per step, fitted by moments)",
    )
    parser.add_argument("--markdown", type=Path, help="write the section into this file")
    args = parser.parse_args(argv)
    if args.paths < 2 or args.days <= 0 or any(i <= 0 for i in args.interval):
        parser.error("--paths must be at least 2; --days and --interval positive")
    if args.model_family and args.markdown is not None:
        parser.error("--model-family scores a projection, not the bound: no --markdown")
    pipe = None
    if args.model is not None:
        import torch

        from sliceai.forecast.pipeline import ForecastPipeline

        torch.set_num_threads(2)
        pipe = ForecastPipeline.load(None if args.model == "bundled" else args.model, device="cpu")
    traces = HELD_OUT if args.held_out else DEV
    sections = []
    for interval_s in args.interval:
        scores: list[SeriesScore] = []
        for name, seed in tqdm(traces, desc=f"{interval_s:g} s traces", unit="trace"):
            scores += score_trace(
                name, seed, interval_s, args.days, args.paths, pipe, args.model_family
            )
        sections.append(report(scores, interval_s, args.by_step))
        print(sections[-1] + "\n", flush=True)
    if args.markdown is not None:
        from sliceai.bench.report import replace_sections

        shown = sys.argv[1:] if argv is None else argv
        text = render_markdown(sections, shown, args.model, args.held_out)
        replace_sections(args.markdown, {SECTION: text})
        print(f"wrote the {SECTION} section of {args.markdown}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
