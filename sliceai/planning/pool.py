"""A forecast that never does much worse than the simple baselines: the model pooled
with EWMA and the rolling quantile, weighted online by their recent pinball loss.

:class:`PooledForecaster` holds its members (the generative model first) and, per
series and quantile level, each member's recent loss. At every origin it averages the
members' quantiles level by level with weights::

    w_k(level)  proportional to  prior_k * exp(-ETA * L_k(level))

where ``L_k(level)`` is member ``k``'s exponentially weighted average (memory
``MEMORY`` forecasts) of its pinball loss at that level divided by the members' mean
of those averages (a ratio of average losses, so one ``ETA`` serves slices of any
size), and then sorts the averaged quantiles (a rearrangement, which never raises the
pinball loss). This is exponentially weighted aggregation with a forgetting factor, one
per level: on traffic the model knows, its sharper forecasts win the weight; where its
tails are too thin, the tail levels go to the member whose tail has been right; on
traffic it does not know at all, the weight moves to what works within tens of
intervals. A level the pool has not been scored at takes the weights of the nearest
one it has (in log-odds), or of the average over levels. Weighting by loss does not make
the pooled quantiles calibrated, so a :class:`~sliceai.planning.calibration.QuantileTracker`
then scales each level by an offset learnt from its own misses (``calibration_step``; 0
turns it off).

Losses come from the pool's own forecasts once their targets are seen: each call
remembers the member forecasts of every step of every origin by the epoch s of their
target interval, and a later call whose history holds that interval (on the same grid
of ``interval_s`` from ``start_time``) scores them before it forecasts. So the pool learns
from whatever calls it gets, in time order: one origin per interval in the live loop,
a whole chunk of origins in the replay (the same weights, interval by interval), the
scored origins in an evaluation. A member that
raises or returns non-finite values for a series gets no weight there (the plan says
so); when every member fails the pool's forecast is NaN and the planner falls back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from sliceai.planning.calibration import STEP, QuantileTracker
from sliceai.planning.forecasters import FloatArray, Forecaster, IntArray

#: Sharpness of the weights: a member whose recent loss is 10 % of the mean below another's
#: gets exp(ETA * 0.1) = 20 times its weight (chosen on dev traces: research/planning).
ETA = 30.0
#: Forecasts each loss average remembers (the forgetting factor is 1 - 1 / MEMORY).
MEMORY = 200
#: Next-interval forecasts kept waiting for their targets, at most.
PENDING = 4096


class PooledForecaster(Forecaster):
    """Quantile averaging of ``members`` with online weights (module docstring).

    ``prior``: each member's weight before any loss is seen (default equal);
    ``calibration_step``: the :class:`QuantileTracker`'s step (0: no calibration).
    """

    def __init__(
        self,
        members: Sequence[Forecaster],
        prior: Sequence[float] | None = None,
        eta: float = ETA,
        memory: float = MEMORY,
        calibration_step: float = STEP,
    ) -> None:
        if len(members) < 1:
            raise ValueError("a pool needs at least one member")
        self.members = tuple(members)
        p = np.ones(len(members)) if prior is None else np.asarray(prior, dtype=np.float64)
        if p.shape != (len(members),) or not np.all(p > 0):
            raise ValueError(f"prior must be {len(members)} positive weights")
        if eta < 0 or memory < 1:
            raise ValueError(f"need eta >= 0 and memory >= 1, got {eta}, {memory}")
        self.log_prior = np.log(p / p.sum())
        self.eta = eta
        self.decay = 1.0 - 1.0 / memory
        self.calibration = QuantileTracker(calibration_step)
        self.name = "pool(" + ", ".join(m.name for m in self.members) + ")"
        self.last_notes: list[str] = []
        self.reset()

    def reset(self) -> None:
        """Forget every loss (a new trace, a new set of series)."""
        # Average pinball losses in bit/s, (n_series, k): over all levels, and by level.
        self.loss: FloatArray | None = None
        self.level_loss: dict[float, FloatArray] = {}
        self.calibration.reset()
        # (origin's grid index, step) -> (target epoch s, member quantiles (k, n, Q), levels,
        # pooled quantiles before calibration (n, Q))
        self._pending: dict[tuple[int, int], tuple[float, FloatArray, FloatArray, FloatArray]] = {}
        self.last_notes = []

    def history_length(self, interval_s: float) -> int:
        return max(m.history_length(interval_s) for m in self.members)

    def swap_member(self, index: int, forecaster: Forecaster) -> Forecaster:
        """Put ``forecaster`` in member ``index``'s place (a retrained model taking over);
        returns the one it replaces. The learnt losses stay: the newcomer inherits its
        predecessor's standing and earns its own from the next forecasts on. Safe while
        another thread forecasts (one reference is replaced)."""
        old = self.members[index]
        members = list(self.members)
        members[index] = forecaster
        self.members = tuple(members)
        return old

    def weights(self, n_series: int, levels: FloatArray | None = None) -> FloatArray:
        """Current weights ``(n_series, k)`` from the loss over all levels, or with
        ``levels`` ``(Q,)`` each level's ``(n_series, k, Q)`` (every member healthy)."""
        return _weights(self.log_prior, self.eta, self._losses(n_series), self.level_loss, levels)

    def _losses(self, n_series: int) -> FloatArray:
        if self.loss is None or self.loss.shape[0] != n_series:
            self.loss = np.zeros((n_series, len(self.members)))
            self.level_loss = {}
            self.calibration.reset()
            self._pending.clear()
        return self.loss

    def online_state(self) -> object:
        """The losses learnt, the calibration offsets and the forecasts waiting for their
        targets (the weights are per member position: a swapped-in member inherits its
        predecessor's)."""
        calibration = self.calibration.state()
        return (self.loss, dict(self.level_loss), calibration, dict(self._pending))

    def load_online_state(self, state: object) -> None:
        loss, level_loss, calibration, pending = cast(
            "tuple[FloatArray | None, dict[float, FloatArray], Any, dict[Any, Any]]", state
        )
        self.loss, self.level_loss, self._pending = loss, dict(level_loss), dict(pending)
        self.calibration.load_state(calibration)

    def for_queries(self, rows: IntArray) -> Forecaster:
        """A read-only view for side queries on the series ``rows`` of those the pool
        forecasts (``GetForecast`` in the live service): the members' quantiles for the
        queried history, combined with the weights the pool has learnt for those rows,
        and nothing learnt or forgotten. Without it a query for fewer series than the
        planner's would reset the pool (its losses are per series) and its forecasts
        would be scored as if the planner had made them."""
        return _PoolQuery(self, np.asarray(rows, dtype=np.int64))

    # -- forecasting ------------------------------------------------------------------
    def quantiles_at(
        self,
        history: FloatArray,
        origins: IntArray,
        levels: FloatArray,
        start_time: float,
        interval_s: float,
        horizon: int = 1,
    ) -> FloatArray:
        org = np.asarray(origins, dtype=np.int64)
        lv = np.asarray(levels, dtype=np.float64)
        n = history.shape[0]
        self._losses(n)
        member_q, notes = self._member_forecasts(history, org, lv, start_time, interval_s, horizon)
        out = np.empty((len(org), n, horizon, len(lv)))
        for k, o in enumerate(org.tolist()):
            self._learn(history, start_time, interval_s, o)
            pooled = self._combine(member_q[:, k], lv)
            out[k] = self.calibration.apply(pooled, lv)
            first = start_time + o * interval_s  # epoch s of the interval forecast first
            grid = round(first / interval_s)
            for h in range(horizon):  # every step is scored once its target is seen
                target = first + h * interval_s
                self._pending.setdefault(
                    (grid, h), (target, member_q[:, k, :, h, :].copy(), lv, pooled[:, h, :])
                )
        self._forget(start_time, interval_s)
        self.last_notes = notes
        return out

    def _member_forecasts(
        self,
        history: FloatArray,
        origins: IntArray,
        levels: FloatArray,
        start_time: float,
        interval_s: float,
        horizon: int,
    ) -> tuple[FloatArray, list[str]]:
        """``(k, m, n_series, horizon, Q)`` (NaN where a member failed) and a note per origin."""
        shape = (len(origins), history.shape[0], horizon, len(levels))
        out = np.full((len(self.members), *shape), np.nan)
        failed: list[str] = []
        bad_rows = np.zeros(len(origins), dtype=bool)
        for j, member in enumerate(self.members):
            try:
                q = np.asarray(
                    member.quantiles_at(history, origins, levels, start_time, interval_s, horizon),
                    dtype=np.float64,
                )
                if q.shape != shape:
                    raise ValueError(f"returned shape {q.shape}, expected {shape}")
            except Exception as exc:  # a member's failure costs it its weight, not the plan
                failed.append(f"{member.name} failed ({type(exc).__name__}: {str(exc)[:200]})")
                bad_rows[:] = True
                continue
            finite = np.asarray(np.isfinite(q).all(axis=(2, 3)))  # (m, n)
            out[j] = np.where(finite[:, :, None, None], np.maximum.accumulate(q, axis=-1), np.nan)
            if not finite.all():
                failed.append(f"{member.name} returned non-finite quantiles")
                bad_rows |= ~finite.all(axis=1)
        note = "; ".join(failed) + ("; pooled from the others" if failed else "")
        return out, [note if b else "" for b in bad_rows.tolist()]

    def _combine(self, member_q: FloatArray, levels: FloatArray) -> FloatArray:
        """Level-by-level weighted average of ``member_q`` ``(k, n, H, Q)`` (see
        :func:`_combine`)."""
        return _combine(self.weights(member_q.shape[1], levels), member_q)

    # -- learning ---------------------------------------------------------------------
    def _learn(self, history: FloatArray, start: float, interval_s: float, origin: int) -> None:
        """Score the pending forecasts whose target is a column of ``history`` before
        ``origin`` (the column a target's epoch s falls on, ``start`` being column 0's)."""
        due = []
        for key, (t, *_) in self._pending.items():
            col = (t - start) / interval_s
            c = round(col)
            if abs(col - c) < 0.25 and 0 <= c < origin:
                due.append((t, key, c))
        for _, key, c in sorted(due):
            _, q, lv, pooled = self._pending.pop(key)
            self._score(q, lv, history[:, c])
            self.calibration.update(pooled, lv, key[1], history[:, c])

    def _score(self, q: FloatArray, levels: FloatArray, actual: FloatArray) -> None:
        """Update the losses with one forecast ``q`` ``(k, n, Q)`` of ``actual`` ``(n,)``."""
        assert self.loss is not None
        diff = actual[None, :, None] - q  # (k, n, Q)
        pinball = np.maximum(levels * diff, (levels - 1.0) * diff).transpose(1, 0, 2)  # (n, k, Q)
        ok = np.isfinite(pinball)
        seen = np.isfinite(actual)[:, None]
        for j, level in enumerate(levels.tolist()):
            key = round(level, 9)
            current = self.level_loss.get(key)
            if current is None:
                current = self.level_loss[key] = np.zeros_like(self.loss)
            self.level_loss[key] = self._updated(current, pinball[:, :, j], ok[:, :, j], seen)
        every = np.asarray(ok.all(axis=2))
        self.loss = self._updated(self.loss, pinball.mean(axis=2), every, seen)

    def _updated(
        self,
        loss: FloatArray,
        pinball: FloatArray,
        ok: npt.NDArray[np.bool_],
        seen: npt.NDArray[np.bool_],
    ) -> FloatArray:
        """``loss`` ``(n, k)`` moved towards this forecast's ``pinball`` ``(n, k)`` for the
        members that forecast the series (a failed member's average stays)."""
        update = ok & seen
        moved = self.decay * loss + (1 - self.decay) * np.where(update, pinball, 0.0)
        return np.asarray(np.where(update, moved, loss))

    def _forget(self, start: float, interval_s: float) -> None:
        """Drop forecasts whose target the history no longer reaches, and the oldest
        beyond :data:`PENDING`."""
        gone = [k for k, (t, *_) in self._pending.items() if t < start - 0.25 * interval_s]
        for key in gone:
            del self._pending[key]
        while len(self._pending) > PENDING:
            del self._pending[min(self._pending)]


def _relative(loss: FloatArray) -> FloatArray:
    """Each member's average loss over the members' mean on the axis 1 (1 where no loss
    has been seen yet)."""
    mean = loss.mean(axis=1, keepdims=True)
    return np.asarray(np.divide(loss, mean, out=np.ones_like(loss), where=mean > 0))


class _PoolQuery(Forecaster):
    """:meth:`PooledForecaster.for_queries`: the pool's members and the weights it had
    learnt for ``rows`` when the view was made; learns nothing."""

    def __init__(self, pool: PooledForecaster, rows: IntArray) -> None:
        self.pool = pool
        self.name = pool.name
        loss, level_loss = pool.loss, dict(pool.level_loss)  # one consistent reading
        offsets = dict(pool.calibration.offset)
        self.calibration = QuantileTracker(pool.calibration.step, pool.calibration.limit)
        if loss is not None and len(rows) and rows.min() >= 0 and rows.max() < loss.shape[0]:
            self.loss: FloatArray = loss[rows]
            self.level_loss = {lv: v[rows] for lv, v in level_loss.items()}
            self.calibration.offset = {key: v[rows] for key, v in offsets.items()}
        else:  # nothing learnt for these rows: the prior
            self.loss = np.zeros((len(rows), len(pool.members)))
            self.level_loss = {}

    def history_length(self, interval_s: float) -> int:
        return self.pool.history_length(interval_s)

    def quantiles_at(
        self,
        history: FloatArray,
        origins: IntArray,
        levels: FloatArray,
        start_time: float,
        interval_s: float,
        horizon: int = 1,
    ) -> FloatArray:
        org = np.asarray(origins, dtype=np.int64)
        lv = np.asarray(levels, dtype=np.float64)
        if history.shape[0] != self.loss.shape[0]:
            raise ValueError(f"a view of {self.loss.shape[0]} series given {history.shape[0]}")
        member_q, notes = self.pool._member_forecasts(
            history, org, lv, start_time, interval_s, horizon
        )
        w = _weights(self.pool.log_prior, self.pool.eta, self.loss, self.level_loss, lv)
        self.last_notes = notes
        pooled = [_combine(w, member_q[:, k]) for k in range(len(org))]
        return np.stack([self.calibration.apply(q, lv) for q in pooled])


def _weights(
    log_prior: FloatArray,
    eta: float,
    loss: FloatArray,
    level_loss: dict[float, FloatArray],
    levels: FloatArray | None,
) -> FloatArray:
    """Weights ``(n, k)`` from the losses over all levels ``loss`` ``(n, k)``, or with
    ``levels`` each level's ``(n, k, Q)`` from ``level_loss`` (module docstring)."""
    if levels is not None:
        per_level = np.stack([_level_losses(level_loss, float(lv), loss) for lv in levels], -1)
        logits = log_prior[None, :, None] - eta * _relative(per_level)
    else:
        logits = log_prior[None, :] - eta * _relative(loss)
    w = np.exp(logits - logits.max(axis=1, keepdims=True))
    return np.asarray(w / w.sum(axis=1, keepdims=True))


def _level_losses(
    level_loss: dict[float, FloatArray], level: float, overall: FloatArray
) -> FloatArray:
    """The losses at ``level``: its own, or the nearest scored level's in log-odds, or
    ``overall`` when no level has been scored yet."""
    key = round(level, 9)
    if key in level_loss:
        return level_loss[key]
    if not level_loss:
        return overall
    logit = np.log(level / (1.0 - level))
    nearest = min(level_loss, key=lambda lv: abs(np.log(lv / (1.0 - lv)) - logit))
    return level_loss[nearest]


def _combine(weights: FloatArray, member_q: FloatArray) -> FloatArray:
    """Level-by-level average of ``member_q`` ``(k, n, H, Q)`` with ``weights`` ``(n, k,
    Q)``, sorted along the levels -> ``(n, H, Q)``; members that failed on a series get no
    weight there (NaN where all failed)."""
    healthy = np.asarray(np.isfinite(member_q).all(axis=(2, 3))).T  # (n, k)
    w = weights * healthy[:, :, None]
    total = w.sum(axis=1, keepdims=True)
    w = np.divide(w, total, out=np.zeros_like(w), where=total > 0)
    pooled = np.sort(np.einsum("nkq,knhq->nhq", w, np.nan_to_num(member_q)), axis=-1)
    return np.asarray(np.where(total[:, :, None, 0] > 0, pooled, np.nan))
