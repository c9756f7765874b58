"""``sliceai serve --adapt``: the running model fine-tuned on the site's own telemetry.

The service records the telemetry it plans from in its store
(:class:`~sliceai.engine.recorder.TelemetryRecorder`). Every ``every_s`` a background
thread (:class:`ModelAdapter`) runs one round (:meth:`ModelAdapter.run_once`):

1. read the stored history at the engine's interval for the running policy's slices
   (:func:`~sliceai.engine.recorder.stored_trace`); with fewer than ``min_history_s`` of
   measured intervals the round is skipped;
2. hold back its most recent ``holdout_fraction`` (at least one hour of intervals) and
   fine-tune a challenger on the rest
   (:func:`~sliceai.forecast.training.finetune.finetune_pipeline`: the ensemble that
   serves the engine's clock, within ``FinetuneOptions.minutes``), always from the model
   the service started with (``base``), so that rounds do not compound and the
   challenger's mixture (tuned networks beside the originals) does not grow;
3. score it and the running model (the champion: the base, or the last challenger
   swapped in) on the held-back part as ``sliceai evaluate`` scores
   (:func:`~sliceai.forecast.training.finetune.score_crps`: the network alone, each
   origin reading the history before it, the same random draws for both);
4. swap the challenger in (``PooledForecaster.swap_member(0, ...)``: the pool keeps its
   weights, the next plan forecasts with it) only when its CRPS is at least ``min_gain``
   below the champion's, and write it to ``models_dir`` (the last :data:`KEEP_MODELS`
   kept) with its path in the store, so a restart with ``--adapt`` and the same
   ``--model`` starts from it (:meth:`ModelAdapter.resume`).

Each round's :class:`AdaptDecision` is logged and handed to the ``on_decision`` callbacks
(:meth:`sliceai.api.metrics.ServiceMetrics.observe_adaptation`). The thread lowers its
own CPU priority (nice 10) so the control loop keeps its latency, and a round never
overlaps the next.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sliceai.engine import Engine, StateStore
from sliceai.engine.recorder import stored_trace
from sliceai.forecast.errors import ForecastError
from sliceai.forecast.forecaster import ModelForecaster
from sliceai.forecast.pipeline import ForecastPipeline
from sliceai.forecast.training.finetune import (
    FinetuneOptions,
    FinetuneResult,
    finetune_pipeline,
)
from sliceai.forecast.training.holdout import score_crps
from sliceai.planning.pool import PooledForecaster
from sliceai.traffic import Trace

log = logging.getLogger(__name__)

#: Outcomes of a round (the ``outcome`` label of ``sliceai_model_adaptations_total``).
SWAPPED, KEPT, SKIPPED, FAILED = "swapped", "kept", "skipped", "failed"
OUTCOMES = (SWAPPED, KEPT, SKIPPED, FAILED)
#: Store key of the last model swapped in: ``{"path", "base", "champion_crps", ...}``.
ADAPTED_KEY = "adapted-model"
#: Adapted checkpoints kept in ``models_dir`` (the older ones are deleted).
KEEP_MODELS = 3
#: The held-back part is at least this long, s.
MIN_HOLDOUT_S = 3600.0
#: Nice value of the adaptation thread (Linux: per thread).
NICENESS = 10


#: Makes a challenger: ``(champion, traces, options, cancel)`` -> (pipeline, what it did).
Tuner = Callable[
    [ForecastPipeline, Sequence[Trace], FinetuneOptions, threading.Event],
    tuple[ForecastPipeline, FinetuneResult],
]


class AdaptError(ValueError):
    """The engine's forecaster cannot be adapted (not the pooled generative model)."""


@dataclass(frozen=True)
class AdaptSettings:
    """When and how the service adapts its model (module docstring)."""

    every_s: float = 6 * 3600.0
    min_history_s: float = 86400.0
    holdout_fraction: float = 0.15
    min_gain: float = 0.01
    finetune: FinetuneOptions = field(
        default_factory=lambda: FinetuneOptions(minutes=10.0, progress=False)
    )
    #: Where swapped-in models are written (None: not written).
    models_dir: Path | None = None
    #: What ``--model`` named: a stored adapted model resumes only over the same base.
    base: str = "default"


@dataclass(frozen=True)
class AdaptDecision:
    """One round: ``outcome`` (:data:`OUTCOMES`), why, and the two scores (NaN when not
    scored) on ``held_back`` intervals after ``history`` intervals of history."""

    outcome: str
    reason: str
    champion_crps: float = float("nan")
    challenger_crps: float = float("nan")
    history: int = 0
    held_back: int = 0
    seconds: float = 0.0
    checkpoint: Path | None = None


class ModelAdapter:
    """Fine-tunes and swaps the pooled model of ``engine`` (module docstring); ``tune``
    makes the challenger (tests hand in their own).

    Raises :class:`AdaptError` unless ``engine.forecaster`` is a
    :class:`~sliceai.planning.pool.PooledForecaster` whose first member is a
    :class:`~sliceai.forecast.forecaster.ModelForecaster`.
    """

    def __init__(
        self,
        engine: Engine,
        store: StateStore,
        settings: AdaptSettings | None = None,
        on_decision: list[Callable[[AdaptDecision], None]] | None = None,
        tune: Tuner = finetune_pipeline,
    ) -> None:
        pool = engine.forecaster
        if not isinstance(pool, PooledForecaster) or not isinstance(
            pool.members[0], ModelForecaster
        ):
            raise AdaptError(
                f"--adapt needs the generative model pooled as serve loads it, not {pool.name!r}"
            )
        self.engine = engine
        self.pool = pool
        self.store = store
        self.settings = settings or AdaptSettings()
        self.on_decision = list(on_decision or [])
        self.tune = tune
        #: The model challengers are fine-tuned from: the one the service started with.
        self.base = self.champion
        self.last: AdaptDecision | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._round = threading.Lock()

    @property
    def champion(self) -> ForecastPipeline:
        member = self.pool.members[0]
        assert isinstance(member, ModelForecaster)
        return member.pipeline

    # -- one round ----------------------------------------------------------------
    def run_once(self) -> AdaptDecision:
        """One adaptation round now (in the caller's thread); never raises for a failed
        round: its decision says ``failed``."""
        with self._round:
            started = time.monotonic()
            try:
                decision = self._round_once()
            except Exception as exc:  # a failed round leaves the running model alone
                log.exception("model adaptation failed")
                decision = AdaptDecision(FAILED, f"{type(exc).__name__}: {exc}")
            decision = dataclasses.replace(decision, seconds=time.monotonic() - started)
        self._report(decision)
        return decision

    def _round_once(self) -> AdaptDecision:
        interval = self.engine.settings.interval_s
        names = self.engine.policy.slice_names
        trace = stored_trace(self.store, names, interval)
        if trace is None:
            return AdaptDecision(SKIPPED, "no telemetry stored yet")
        measured = int(np.isfinite(trace.load_bps).any(axis=(1, 2)).sum())
        needed = int(np.ceil(self.settings.min_history_s / interval))
        if measured < needed:
            return AdaptDecision(
                SKIPPED,
                f"{measured} intervals of history, {needed} needed",
                history=trace.n_intervals,
            )
        held = max(
            round(self.settings.holdout_fraction * trace.n_intervals),
            int(np.ceil(MIN_HOLDOUT_S / interval)),
        )
        cut = trace.n_intervals - held
        if cut < held:
            return AdaptDecision(SKIPPED, "history too short to hold a part back")
        champion = self.champion
        challenger, result = self.tune(
            self.base, [trace.window(0, cut)], self.settings.finetune, self._stop
        )
        if self._stop.is_set():
            return AdaptDecision(SKIPPED, "the service is stopping", history=cut, held_back=held)
        values = np.moveaxis(trace.load_bps, 0, -1).reshape(-1, trace.n_intervals)
        scored = AdaptDecision(
            KEPT,
            "",
            champion_crps=score_crps(champion, values, trace.start, interval, cut),
            challenger_crps=score_crps(challenger, values, trace.start, interval, cut),
            history=cut,
            held_back=held,
        )
        if not (np.isfinite(scored.champion_crps) and np.isfinite(scored.challenger_crps)):
            return dataclasses.replace(
                scored, outcome=SKIPPED, reason="nothing to score in the held-back part"
            )
        if not scored.challenger_crps < scored.champion_crps * (1.0 - self.settings.min_gain):
            why = f"the challenger is not {100 * self.settings.min_gain:g}% better"
            return dataclasses.replace(scored, reason=why)
        if self.champion is not champion:
            return dataclasses.replace(scored, reason="the model changed during the round")
        path = self._save(challenger, scored.champion_crps, scored.challenger_crps)
        self.engine.swap_member(0, ModelForecaster(challenger))
        tuned = " and ".join(sorted(result.ensembles))
        why = f"{tuned} ensemble fine-tuned in {result.seconds:.0f} s"
        return dataclasses.replace(scored, outcome=SWAPPED, reason=why, checkpoint=path)

    def _save(self, pipeline: ForecastPipeline, champion: float, challenger: float) -> Path | None:
        """Write a swapped-in model to ``models_dir`` and remember it in the store."""
        root = self.settings.models_dir
        if root is None:
            return None
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self.engine.clock.wall()))
        path = root / f"adapted-{stamp}"
        pipeline.save(path, adapted_champion_crps=champion, adapted_challenger_crps=challenger)
        self.store.save_state(
            ADAPTED_KEY,
            {
                "path": str(path),
                "base": self.settings.base,
                "champion_crps": champion,
                "challenger_crps": challenger,
            },
        )
        kept = sorted(p for p in root.glob("adapted-*") if p.is_dir())
        for old in kept[:-KEEP_MODELS]:
            shutil.rmtree(old, ignore_errors=True)
        return path

    def _report(self, decision: AdaptDecision) -> None:
        self.last = decision
        text = f"model adaptation: {decision.outcome} ({decision.reason})"
        if decision.outcome in (SWAPPED, KEPT):
            text += (
                f"; CRPS / mean load on the last {decision.held_back} intervals: running "
                f"model {decision.champion_crps:.4f}, fine-tuned {decision.challenger_crps:.4f} "
                f"(trained on the {decision.history} before); {decision.seconds:.0f} s"
            )
        if decision.checkpoint is not None:
            text += f"; saved in {decision.checkpoint}"
        log.log(logging.WARNING if decision.outcome == FAILED else logging.INFO, "%s", text)
        for cb in list(self.on_decision):
            try:
                cb(decision)
            except Exception:
                log.exception("adaptation callback failed")

    # -- restart ------------------------------------------------------------------
    def resume(self, device: str = "auto") -> Path | None:
        """Swap in the model the last round swapped in before a restart, when it was
        adapted from the same ``--model`` and still loads; returns its path."""
        saved = self.store.load_state(ADAPTED_KEY)
        if not isinstance(saved, dict) or saved.get("base") != self.settings.base:
            return None
        path = Path(str(saved.get("path")))
        try:
            pipeline = ForecastPipeline.load(path, device=device)
        except ForecastError as exc:
            log.warning("adapted model not resumed: %s", exc)
            return None
        self.engine.swap_member(0, ModelForecaster(pipeline))
        log.info("model adaptation: resumed the adapted model in %s", path)
        return path

    # -- thread -------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="sliceai-adapt", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread; a fine-tune in progress ends at its next step, the round is
        skipped (waits up to ``timeout`` s for it)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        with contextlib.suppress(AttributeError, OSError):  # the control loop comes first
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICENESS)
        while not self._stop.wait(self.settings.every_s):
            self.run_once()


def build_adapter(
    engine: Engine,
    store: StateStore,
    every_s: float,
    min_history_s: float,
    minutes: float,
    device: str = "auto",
    models_dir: Path | None = None,
    base: str = "default",
) -> ModelAdapter:
    """The adapter ``sliceai serve --adapt`` runs (its options in :mod:`sliceai.api.commands`)."""
    finetune = FinetuneOptions(minutes=minutes, device=device, progress=False)
    settings = AdaptSettings(
        every_s=every_s,
        min_history_s=min_history_s,
        finetune=finetune,
        models_dir=models_dir,
        base=base,
    )
    return ModelAdapter(engine, store, settings)
