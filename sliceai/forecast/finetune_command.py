"""``sliceai train --init default|DIR --traces SITE.csv ... --out DIR``: fine-tune a
checkpoint on a site's own history (:mod:`sliceai.forecast.training.finetune`).

The handler of ``sliceai train`` (its options in :mod:`sliceai.forecast_commands`):
without ``--init`` it trains from scratch (:func:`sliceai.forecast.commands.train_command`).
With it, ``--traces`` (long CSV) are the site's history, ``--minutes`` bounds the wall
time, ``--seed`` and ``--device`` apply; ``--epochs``, ``--steps`` and ``--resume`` belong
to training from scratch. Exit 0 with the checkpoint written; 1 when fine-tuning failed;
2 for usage errors, a missing or bad ``--init`` checkpoint and unreadable traces.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tabulate import tabulate

from sliceai.forecast.checkpoint import checkpoint_dir
from sliceai.forecast.commands import train_command
from sliceai.forecast.errors import ForecastError
from sliceai.forecast.pipeline import ForecastPipeline, resolve_device
from sliceai.forecast.training.finetune import (
    FinetuneOptions,
    FinetuneResult,
    finetune_checkpoint,
)
from sliceai.traffic import Trace, TraceError
from sliceai.traffic.longcsv import read_long_csv
from sliceai.usage import UsageError

#: ``--init`` that names the bundled checkpoint.
DEFAULT = "default"
#: What ``FinetuneOptions.validation`` validates on, in words.
WHERE = {"blocks": "one-hour blocks spread over it", "tail": "its end"}


def train_or_finetune(args: argparse.Namespace) -> int:
    """``sliceai train``: fine-tune with ``--init``, else train from scratch."""
    if getattr(args, "init", None) is None:
        return int(train_command(args))
    return finetune_command(args)


def finetune_command(args: argparse.Namespace) -> int:
    """``sliceai train --init``."""
    if args.resume:
        raise UsageError("--resume continues a run trained from scratch; not with --init")
    if args.scenario:
        raise UsageError("--init fine-tunes on a site's own history: give it with --traces")
    if not args.traces:
        raise UsageError("give the site's history with --traces FILE...")
    if args.minutes is not None and not args.minutes > 0:
        raise UsageError(f"--minutes must be positive, got {args.minutes}")
    init = None if args.init == DEFAULT else Path(args.init)
    if init is not None and not init.is_dir():
        raise UsageError(f"--init {init}: no such checkpoint directory (or 'default')")
    source = checkpoint_dir(init)
    if args.out.exists() and args.out.resolve() == source.resolve():
        raise UsageError("--out must be another directory than --init")
    try:
        resolve_device(args.device)
        ForecastPipeline.load(source, device="cpu")
    except ForecastError as exc:
        raise UsageError(f"--init {args.init}: {exc}") from None
    traces = [_read(p) for p in args.traces]
    options = FinetuneOptions(seed=args.seed, device=args.device, minutes=args.minutes)
    try:
        result = finetune_checkpoint(
            init, traces, args.out, options, finetuned_on=[str(p) for p in args.traces]
        )
    except ForecastError as exc:
        print(f"sliceai train: {exc}", file=sys.stderr)
        return 1
    print(summary(result, options))
    print(f"checkpoint in {args.out} (sliceai serve --model {args.out})")
    return 0


def _read(path: Path) -> Trace:
    try:
        return Trace.concat(read_long_csv(path))
    except (OSError, TraceError) as exc:
        raise UsageError(f"{path}: {exc}") from None


def summary(result: FinetuneResult, options: FinetuneOptions) -> str:
    """A table of what a fine-tune did: per ensemble, its validation scores before and
    after, and per member its validation CRPS before and after and the epoch kept."""
    rows = []
    for name, ens in result.ensembles.items():
        before, after = ens.validation_score_before, ens.validation_score_after
        change = f"{100 * (after / before - 1):+.1f}%" if before > 0 else "-"
        members = "; ".join(
            f"{m.initial_val_crps:.4f} -> {m.best_val_crps:.4f} (epoch {m.best_epoch})"
            for m in ens.members
        )
        shape = f"{ens.tail_shape[0]:g} z + {ens.tail_shape[1]:g} z^3"
        rows.append([name, f"{before:.4f}", f"{after:.4f}", change, members, shape])
    headers = ["ensemble", "CRPS before", "after", "change", "members' validation", "tail"]
    table = tabulate(rows, headers=headers, disable_numparse=True)
    return (
        f"{table}\n\nCRPS / mean load on the {100 * options.validation_fraction:g}% of each "
        f"trace that validates ({WHERE[options.validation]}); "
        f"{result.seconds / 60:.1f} minutes"
    )
