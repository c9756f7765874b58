"""``sliceai train``, ``forecast``, ``generate`` and ``evaluate``: their options.

The handlers are in :mod:`sliceai.forecast.commands`. This module sits outside the
:mod:`sliceai.forecast` package because that package imports torch at its top, and
building the command line (``sliceai --help``) must not (see :mod:`sliceai.cli`).

Exit codes: 0 done; 1 training failed; 2 usage errors, unreadable traces, a bad
checkpoint, or a trace too short to evaluate on.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

DEVICE_HELP = "auto (CUDA when present), cpu or cuda"
SCENARIO_HELP = "bundled scenario as NAME:SEED[:DAYS] (generated in memory; default 7 days)"
HANDLERS = "sliceai.forecast.commands"


def register(subparsers: Any) -> None:
    train = subparsers.add_parser("train", help="train the generative traffic model on traces")
    _add_sources(train)
    train.add_argument(
        "--out", type=Path, required=True, metavar="DIR", help="checkpoint directory"
    )
    train.add_argument("--epochs", type=int, default=30)
    train.add_argument("--steps", type=int, default=150, help="batches per epoch")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--device", default="auto", help=DEVICE_HELP)
    train.add_argument("--resume", action="store_true", help="continue the run saved in DIR")
    train.add_argument(
        "--nproc",
        type=int,
        default=1,
        metavar="N",
        help="train on N local processes with DistributedDataParallel (gloo on the CPU, "
        "nccl with one GPU each): the model one process trains, within float tolerance; "
        "under torchrun the group it launched is joined instead",
    )
    train.add_argument(
        "--init",
        metavar="default|DIR",
        help="fine-tune this checkpoint ('default': the bundled one) on a site's history "
        "(--traces) instead of training from scratch; the ensemble serving the traces' "
        "clock is tuned, the other copied",
    )
    train.add_argument(
        "--minutes", type=float, metavar="M", help="with --init: wall-time budget, minutes"
    )
    train.set_defaults(handler="sliceai.forecast.finetune_command:train_or_finetune")

    fc = subparsers.add_parser(
        "forecast", help="forecast the intervals after a trace (quantiles, fan chart)"
    )
    fc.add_argument("trace", type=Path, metavar="TRACE", help="long CSV trace")
    fc.add_argument("--horizon", type=int, default=16, help="intervals to forecast")
    fc.add_argument("--plot", type=Path, metavar="FILE", help="write a fan chart PNG")
    _add_model(fc)
    fc.set_defaults(handler=f"{HANDLERS}:forecast_command")

    gen = subparsers.add_parser("generate", help="synthesise a trace that continues a given one")
    gen.add_argument(
        "--like", type=Path, required=True, metavar="TRACE", help="long CSV trace to continue"
    )
    gen.add_argument("--days", type=float, default=1.0)
    gen.add_argument(
        "-o", "--output", type=Path, required=True, metavar="FILE", help="long CSV to write"
    )
    gen.add_argument("--seed", type=int, default=0)
    _add_model(gen)
    gen.set_defaults(handler=f"{HANDLERS}:generate_command")

    ev = subparsers.add_parser(
        "evaluate",
        help="score the forecaster that plans (the pooled model) against seasonal naive, "
        "EWMA and rolling quantile",
        description="Score a forecaster against the seasonal naive, EWMA and rolling "
        "quantile baselines on traces: CRPS (from a grid of 100 quantiles), pinball loss and "
        "interval coverage, each series' scores divided by its mean load. The forecaster is "
        "the one --model names, pooled with EWMA and the rolling quantile as sliceai serve "
        "and replay plan with (--no-pool: the model alone).",
    )
    _add_sources(ev)
    ev.add_argument("--horizon", type=int, default=16, help="intervals per forecast")
    ev.add_argument("--stride", type=int, default=16, help="intervals between forecast origins")
    ev.add_argument("--json", type=Path, metavar="FILE", help="also write the report as JSON")
    ev.add_argument(
        "--model",
        metavar="DIR|default|empirical",
        help="checkpoint directory, 'default' (the bundled model, the default) or "
        "'empirical' (the rolling quantile alone)",
    )
    ev.add_argument("--device", default="auto", help=DEVICE_HELP)
    ev.add_argument(
        "--no-pool", action="store_true", help="score the model alone, not pooled with baselines"
    )
    ev.set_defaults(handler=f"{HANDLERS}:evaluate_command")


def _add_sources(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--traces", type=Path, nargs="*", default=[], metavar="FILE", help="long CSV traces"
    )
    p.add_argument(
        "--scenario", nargs="*", default=[], metavar="NAME:SEED[:DAYS]", help=SCENARIO_HELP
    )


def _add_model(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model", type=Path, metavar="DIR", help="checkpoint directory (default: bundled)"
    )
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument(
        "--quantize", choices=["int8", "none"], default="none", help="dynamic int8 on the CPU"
    )
