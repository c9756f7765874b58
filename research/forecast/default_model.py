"""Rebuild the bundled default checkpoint: ``python -m research.forecast.default_model``.

Trains on the ``campus``, ``hospital`` and ``factory`` generators (per scenario four
times 14 days at 1-minute and 2 x 7 days at 10-second intervals, each trace its own
seed below the held-out ones: :func:`training_specs`; the last 15% of every series
validates, with the day of history before it) and writes ``sliceai/data/model/``.

The checkpoint is a seed ensemble (:mod:`sliceai.forecast.mixture`): for each of
``--seeds`` seeds ``seed, seed + 1, ...`` one network trained on those traces and (with
``--variants``, the default) one trained on them plus a randomised variant of each
(:mod:`research.forecast.randomized`), each alone on one torch thread, ``--jobs`` at a
time, joined with one tail shape fitted to the mixture
(:func:`~sliceai.forecast.training.calibration.fit_shape`). Clocks faster than
:data:`FAST_BELOW_S` get their own ensemble of the same make, trained on 10-second
traces alone (per scenario 16 x 7 days: :data:`FAST_CLOCKS_ONCE`), without yesterday's
window and with a GRU over the recent points (:data:`FAST_RECURRENT_WINDOW`), its weights
stored as fp16, in the checkpoint's ``fast/`` subdirectory
(``ForecastConfig.fast_below_s``). The ``fast/`` networks' variants can carry the generic
traffic families of :mod:`research.forecast.families` (:data:`FAST_FAMILIES`), and
``--fast-only`` retrains that ensemble alone, leaving the main one as it is. Deterministic
on the CPU for a given seed and thread count (one thread by default: the shipped
checkpoint's); about 40 minutes for the six networks on 2 cores (each fast network
15-17).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch

from research.forecast.traces import TRAINING_SCENARIOS, generate_variant
from sliceai.forecast.checkpoint import FAST_DIR, default_checkpoint
from sliceai.forecast.config import ForecastConfig
from sliceai.forecast.scenarios import generate_scenario
from sliceai.forecast.training.calibration import build_ensemble
from sliceai.forecast.training.data import Series, sample_windows, series_from_traces
from sliceai.forecast.training.train import STATE_DIR, TrainOptions, train

#: Repeats of :data:`TRAINING_CLOCKS_ONCE` per training scenario (what each repeat and
#: clock scored: ``experiments.md``, "The recipe's settings").
TRAINING_REPEATS = 4
#: (days, interval_s) of one repeat's traces: 1-minute and 10-second clocks.
TRAINING_CLOCKS_ONCE = ((14.0, 60.0), (7.0, 10.0), (7.0, 10.0))
#: Scenario ``k`` of ``TRAINING_SCENARIOS`` seeds its traces ``SCENARIO_SEED_STRIDE * k + 1``,
#: ``+ 2``, ...: campus includes slices of the others, so equal seeds would repeat their
#: traffic.
SCENARIO_SEED_STRIDE = 20
#: Intervals of yesterday's history around the origin that the model reads.
SEASONAL_WINDOW = 128
#: ... when forecasting at clocks of this many seconds and slower
#: (``ForecastConfig.seasonal_min_interval_s`` of the joined ensemble; the networks train
#: with the window at every clock).
SEASONAL_MIN_INTERVAL_S = 30.0
#: Bound on each step's log-space standard deviation (``ForecastConfig.max_log_std``) of
#: the joined ensembles; the networks train without it.
MAX_LOG_STD = 2.0
#: Clocks faster than this many seconds are forecast by the ``fast/`` ensemble
#: (``ForecastConfig.fast_below_s``): :data:`FAST_SEEDS` seeds with and without variants,
#: trained on 10-second traces only (:data:`FAST_CLOCKS_ONCE`) and without yesterday's
#: window.
FAST_BELOW_S = 30.0
#: (days, interval_s) of one repeat's traces for the ``fast/`` ensemble: twice the
#: 10-second traces the main ensemble trains on, seeded alike (so half are the same
#: traces).
FAST_CLOCKS_ONCE = ((7.0, 10.0),) * 4
#: Context points the ``fast/`` networks' GRU reads (``ForecastConfig.recurrent_window``;
#: the main networks have none).
FAST_RECURRENT_WINDOW = 64
#: Seeds of the ``fast/`` ensemble (each with and without variants, as :data:`VARIANTS`
#: says); 0: no fast-clock ensemble.
FAST_SEEDS = 1
#: Store the ``fast/`` networks' weights as fp16 (read back into fp32 networks): half the
#: bytes, room for more networks under the 5 MB budget.
FAST_WEIGHTS_FP16 = True
#: Torch threads per network: the float sums (so the weights) depend on it; the shipped
#: checkpoint was trained on one.
TRAINING_THREADS = 1
#: Seeds in the main ensemble. Each seed trains two networks: one on the bundled
#: scenarios alone, one also on randomised variants of them (:data:`VARIANTS`), so the
#: checkpoint holds ``2 * SEEDS`` networks.
SEEDS = 2
#: Train a second network per seed on the bundled scenarios plus one randomised variant
#: of each training trace (:mod:`research.forecast.randomized`: other rates, schedules,
#: session lengths and noise; generated with seed ``VARIANT_SEED_BASE`` + the trace's).
VARIANTS = True
VARIANT_SEED_BASE = 100
#: Lay the generic traffic families (:func:`research.forecast.families.widen`: heavy-tailed
#: ON/OFF sources, Markov-modulated bursts, level steps, full-buffer stretches) over the
#: main networks' variants...
FAMILIES = False
#: ... and over the ``fast/`` networks' variants.
FAST_FAMILIES = False
#: Networks in the shipped checkpoint.
MEMBERS = SEEDS * (2 if VARIANTS else 1)
#: Learning rate at the last epoch as a fraction of the first (cosine decay;
#: :class:`~sliceai.forecast.training.train.TrainOptions`).
FINAL_LR_FRACTION = 0.1


def training_specs(
    variants: bool = False, fast: bool = False
) -> list[tuple[str, int, float, float, bool]]:
    """``(scenario, seed, days, interval_s, variant)`` of every training trace: each scenario
    :data:`TRAINING_REPEATS` times :data:`TRAINING_CLOCKS_ONCE` (with ``fast``:
    :data:`FAST_CLOCKS_ONCE`, the ``fast/`` ensemble's), and with ``variants`` a randomised
    variant of each (seed + :data:`VARIANT_SEED_BASE`)."""
    clocks = (FAST_CLOCKS_ONCE if fast else TRAINING_CLOCKS_ONCE) * TRAINING_REPEATS
    specs = [
        (name, SCENARIO_SEED_STRIDE * k + 1 + j, days, interval, False)
        for k, name in enumerate(TRAINING_SCENARIOS)
        for j, (days, interval) in enumerate(clocks)
    ]
    if variants:
        specs += [(n, VARIANT_SEED_BASE + s, d, i, True) for n, s, d, i, _ in specs]
    return specs


def training_data(
    seasonal_window: int = SEASONAL_WINDOW,
    variants: bool = False,
    fast: bool = False,
    families: bool = False,
) -> tuple[ForecastConfig, list[Series], list[Series], list[str]]:
    """The config, training and validation series, and the trace labels; with
    ``variants`` also those of a randomised variant of each training trace (with
    ``families``: the generic traffic families laid over each variant); with ``fast``
    those of the ``fast/`` ensemble (no seasonal window, a GRU over the recent points)."""
    specs = training_specs(variants, fast)
    seasonal_window = 0 if fast else seasonal_window
    traces = [
        generate_variant(n, s, d, i, families) if v else generate_scenario(n, s, d, i)
        for n, s, d, i, v in specs
    ]
    kind = " variant with families" if families else " variant"
    labels = [f"{n}{kind if v else ''}:{s}:{d:g} days at {i:g} s" for n, s, d, i, v in specs]
    config = ForecastConfig(
        seasonal_window=seasonal_window,
        zero_inflated=True,
        recurrent_window=FAST_RECURRENT_WINDOW if fast else 0,
    )
    pairs = [
        s.split(0.85, history=config.history_length(s.interval_s))
        for s in series_from_traces(traces)
    ]
    return config, [a for a, _ in pairs], [b for _, b in pairs], labels


def build(
    out: Path,
    epochs: int = 60,
    seed: int = 0,
    threads: int = TRAINING_THREADS,
    seasonal_window: int = SEASONAL_WINDOW,
    progress: bool = True,
    final_lr: float = FINAL_LR_FRACTION,
    variants: bool = False,
    fast: bool = False,
    families: bool = False,
) -> float:
    """Train one network of the default model into ``out`` (with ``variants``: on the
    randomised variants too, with ``families`` laid over them; with ``fast``: one of the
    ``fast/`` ensemble); returns its best validation CRPS."""
    torch.set_num_threads(threads)
    config, train_series, val_series, labels = training_data(
        seasonal_window, variants, fast, families
    )
    result = train(
        train_series,
        val_series,
        out,
        config=config,
        options=TrainOptions(
            epochs=epochs,
            steps_per_epoch=200,
            patience=15,
            learning_rate=2e-3,
            seed=seed,
            device="cpu",
            progress=progress,
            final_lr_fraction=final_lr,
        ),
        metadata={"trained_on": labels},
    )
    state = out / STATE_DIR
    if state.is_dir():
        for f in state.iterdir():
            f.unlink()
        state.rmdir()
    return result.best_val_crps


def _member(args: tuple[Path, int, int, int, int, float, bool, bool, bool]) -> float:
    out, epochs, seed, threads, window, final_lr, variants, fast, families = args
    return build(out, epochs, seed, threads, window, False, final_lr, variants, fast, families)


def member_specs(seeds: int, variants: bool) -> list[tuple[int, bool]]:
    """``(seed offset, trained with variants)`` of each network: every seed on the bundled
    scenarios, then (with ``variants``) every seed again with the variants."""
    plain = [(k, False) for k in range(seeds)]
    return plain + ([(k, True) for k in range(seeds)] if variants else [])


def build_members(
    out: Path,
    seeds: int = SEEDS,
    epochs: int = 60,
    seed: int = 0,
    threads: int = TRAINING_THREADS,
    seasonal_window: int = SEASONAL_WINDOW,
    jobs: int = 2,
    final_lr: float = FINAL_LR_FRACTION,
    variants: bool = VARIANTS,
    fast_seeds: int = FAST_SEEDS,
    families: bool = FAMILIES,
    fast_families: bool = FAST_FAMILIES,
    fast_only: bool = False,
    members_dir: Path | None = None,
) -> list[float]:
    """Train the networks of :func:`member_specs` (seeds ``seed + k``), and with
    ``fast_seeds`` those of the ``fast/`` ensemble, in ``jobs`` processes and join them
    into the checkpoint in ``out`` (one network and no fast ones: written as is, reading
    yesterday at every clock); returns each network's best validation CRPS. With
    ``fast_only`` only the ``fast/`` networks are trained and joined into ``out``'s
    ``fast/``, the main ensemble there left as it is (:func:`join_fast`). The networks
    are trained into ``members_dir`` (kept: ``member-K``, ``fast-K``) or a temporary
    directory."""
    specs = [] if fast_only else member_specs(seeds, variants)
    fast_specs = member_specs(fast_seeds, variants) if fast_seeds > 0 else []
    if fast_only:
        if not fast_specs:
            raise ValueError("--fast-only needs fast seeds")
        routed_checkpoint(out)  # fail before training, not after
    elif len(specs) == 1:
        if fast_specs:
            raise ValueError("a fast-clock ensemble goes with an ensemble: more seeds or variants")
        return [build(out, epochs, seed, threads, seasonal_window, True, final_lr)]
    with tempfile.TemporaryDirectory(prefix="sliceai-members-") as tmp:
        base = Path(tmp) if members_dir is None else members_dir
        dirs = [base / f"member-{k}" for k in range(len(specs))]
        fast_dirs = [base / f"fast-{k}" for k in range(len(fast_specs))]
        work = [
            (d, epochs, seed + k, threads, seasonal_window, final_lr, v, fast, fam)
            for fast, fam, ds, ss in (
                (False, families, dirs, specs),
                (True, fast_families, fast_dirs, fast_specs),
            )
            for d, (k, v) in zip(ds, ss, strict=True)
        ]
        # Fresh interpreters (spawn): each member alone, as a one-process build trains it.
        with ProcessPoolExecutor(max(1, jobs), mp_context=get_context("spawn")) as pool:
            scores = list(pool.map(_member, work))
        for (_, _, k, *_, v, fast, fam), score in zip(work, scores, strict=True):
            data = "bundled scenarios and variants" if v else "bundled scenarios"
            data += " with families" if v and fam else ""
            which = "fast-clock network" if fast else "network"
            print(f"{which} seed {k} on {data}: validation CRPS {score:.4f}", file=sys.stderr)
        if fast_only:
            join_fast(fast_dirs, out, seed, variants, fast_families)
        else:
            join(dirs, out, seed, seasonal_window, variants, fast_dirs, families, fast_families)
    return scores


def join(
    member_dirs: list[Path],
    out: Path,
    seed: int = 0,
    seasonal_window: int = SEASONAL_WINDOW,
    variants: bool = VARIANTS,
    fast_dirs: list[Path] | None = None,
    families: bool = FAMILIES,
    fast_families: bool = FAST_FAMILIES,
) -> None:
    """Join member checkpoints, in the order of :func:`member_specs`, into the ensemble in
    ``out``, the tail shape fitted on the validation windows a ``seed`` build validates
    on (with ``variants``: the second half of ``member_dirs`` trained with the variants,
    and the variants' windows validate too, with ``families`` laid over them); ``fast_dirs``,
    likewise (``fast_families``), into the ``fast/`` ensemble that forecasts below
    :data:`FAST_BELOW_S` (None: none)."""
    for dirs in (member_dirs, fast_dirs or []):
        _check_pairs(dirs, variants)
    if fast_dirs:
        _join_ensemble(fast_dirs, out / FAST_DIR, seed, 0, variants, True, fast_families)
    elif (out / FAST_DIR).is_dir():  # a stale fast-clock checkpoint of an earlier build
        shutil.rmtree(out / FAST_DIR)
    # Only now does the main checkpoint point to a fast one: that one exists.
    _join_ensemble(
        member_dirs, out, seed, seasonal_window, variants, False, families, bool(fast_dirs)
    )


def join_fast(
    fast_dirs: list[Path],
    out: Path,
    seed: int = 0,
    variants: bool = VARIANTS,
    families: bool = FAST_FAMILIES,
) -> None:
    """Join ``fast_dirs`` (as :func:`join` does) into ``out``'s ``fast/`` ensemble alone:
    ``out`` must hold a main ensemble that hands the clocks below :data:`FAST_BELOW_S` to
    ``fast/``, and none of its own files change."""
    _check_pairs(fast_dirs, variants)
    routed_checkpoint(out)
    _join_ensemble(fast_dirs, out / FAST_DIR, seed, 0, variants, True, families)


def routed_checkpoint(out: Path) -> None:
    """Raise ValueError unless ``out`` holds a checkpoint routing clocks below
    :data:`FAST_BELOW_S` to its ``fast/`` one."""
    try:
        config = json.loads((out / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{out}: no checkpoint to join a fast ensemble to ({exc})") from None
    if config.get("fast_below_s") != FAST_BELOW_S:
        raise ValueError(
            f"{out}: its checkpoint hands clocks below {config.get('fast_below_s')} s to fast/, "
            f"not below {FAST_BELOW_S:g} s"
        )


def _check_pairs(dirs: list[Path], variants: bool) -> None:
    if variants and len(dirs) % 2:
        raise ValueError(f"{len(dirs)} networks: with variants, each seed trains two")


def _join_ensemble(
    member_dirs: list[Path],
    out: Path,
    seed: int,
    seasonal_window: int,
    variants: bool,
    fast: bool,
    families: bool,
    routed: bool = False,
) -> None:
    specs = member_specs(len(member_dirs) // 2 if variants else len(member_dirs), variants)
    config, _, val_series, labels = training_data(seasonal_window, variants, fast, families)
    opts = TrainOptions(seed=seed)
    windows = sample_windows(
        val_series,
        opts.validation_windows,
        config.context_length,
        config.max_horizon,
        np.random.default_rng([opts.seed, 10**6]),
        augment=False,
        seasonal_window=config.seasonal_window,
        seasonal_min_interval_s=config.seasonal_min_interval_s,
    )
    build_ensemble(
        member_dirs,
        out,
        windows,
        None if fast else SEASONAL_MIN_INTERVAL_S,
        MAX_LOG_STD,
        FAST_BELOW_S if routed else None,
        half=fast and FAST_WEIGHTS_FP16,
        trained_on=labels,
        member_seeds=[seed + k for k, _ in specs],
        member_variants=[v for _, v in specs],
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=default_checkpoint())
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=TRAINING_THREADS)
    parser.add_argument("--seasonal-window", type=int, default=SEASONAL_WINDOW)
    parser.add_argument("--seeds", type=int, default=SEEDS, help="seeds in the ensemble")
    parser.add_argument(
        "--variants",
        action=argparse.BooleanOptionalAction,
        default=VARIANTS,
        help="a second network per seed trained on randomised scenario variants too",
    )
    parser.add_argument(
        "--families",
        action=argparse.BooleanOptionalAction,
        default=FAMILIES,
        help="lay the generic traffic families over the main networks' variants",
    )
    parser.add_argument(
        "--fast-families",
        action=argparse.BooleanOptionalAction,
        default=FAST_FAMILIES,
        help="lay the generic traffic families over the fast networks' variants",
    )
    parser.add_argument(
        "--fast-seeds",
        type=int,
        default=FAST_SEEDS,
        help=f"seeds of the ensemble for clocks below {FAST_BELOW_S:g} s (0: none)",
    )
    parser.add_argument(
        "--fast-only",
        action="store_true",
        help="train only the fast ensemble's networks and join them into --out's fast/, "
        "leaving the main ensemble there as it is",
    )
    parser.add_argument(
        "--members-dir",
        type=Path,
        metavar="DIR",
        help="train the networks into DIR (kept; --join / --join-fast take them later) "
        "instead of a temporary directory",
    )
    parser.add_argument("--jobs", type=int, default=2, help="networks trained at once")
    parser.add_argument(
        "--final-lr",
        type=float,
        default=FINAL_LR_FRACTION,
        help="learning rate at the last epoch, as a fraction of the first",
    )
    parser.add_argument(
        "--join",
        type=Path,
        nargs="+",
        metavar="DIR",
        help="only join these trained networks (seeds --seed, --seed + 1, ...; with "
        "--variants, those trained on the variants after the others)",
    )
    parser.add_argument(
        "--join-fast",
        type=Path,
        nargs="+",
        metavar="DIR",
        help="these networks, in the same order, forecast the fast clocks; without --join "
        "they are joined into --out's fast/ alone, its main ensemble left as it is",
    )
    return _run(parser.parse_args(argv))


def _run(args: argparse.Namespace) -> int:
    if args.join_fast and not args.join:
        join_fast(args.join_fast, args.out, args.seed, args.variants, args.fast_families)
        print(f"{len(args.join_fast)} fast-clock networks joined into {args.out}", file=sys.stderr)
        return 0
    if args.join:
        join(
            args.join,
            args.out,
            args.seed,
            args.seasonal_window,
            args.variants,
            args.join_fast,
            args.families,
            args.fast_families,
        )
        fast = f" and {len(args.join_fast)} for the fast clocks" if args.join_fast else ""
        print(f"ensemble of {len(args.join)}{fast} written to {args.out}", file=sys.stderr)
        return 0
    scores = build_members(
        args.out,
        args.seeds,
        args.epochs,
        args.seed,
        args.threads,
        args.seasonal_window,
        args.jobs,
        args.final_lr,
        args.variants,
        args.fast_seeds,
        args.families,
        args.fast_families,
        args.fast_only,
        args.members_dir,
    )
    best = ", ".join(f"{c:.4f}" for c in scores)
    what = "fast-clock ensemble" if args.fast_only else "default model"
    print(f"{what} written to {args.out} (validation CRPS {best})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
