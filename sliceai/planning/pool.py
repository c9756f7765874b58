"""A forecast that never does much worse than the simple baselines: the model pooled
with EWMA and the rolling quantile, weighted online by their recent pinball loss.

:class:`PooledForecaster` holds its members (the generative model first) and, per
series, each member's recent loss. At every origin it averages the members'
quantiles (quantile averaging keeps them monotone) with weights::

    w_k  proportional to  prior_k * exp(-ETA * L_k)

where ``L_k`` is member ``k``'s exponentially weighted average (memory ``MEMORY``
forecasts) of its *relative* pinball loss: its loss on a forecast, averaged over the
quantile levels, divided by the members' mean loss on that forecast (so one ``ETA``
serves slices of any size). This is exponentially weighted aggregation with a
forgetting factor: on traffic the model knows, its sharper forecasts win the weight;
on traffic it does not, the weight moves to what works within tens of intervals.

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

import numpy as np

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

    ``prior``: each member's weight before any loss is seen (default equal).
    """

    def __init__(
        self,
        members: Sequence[Forecaster],
        prior: Sequence[float] | None = None,
        eta: float = ETA,
        memory: float = MEMORY,
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
        self.name = "pool(" + ", ".join(m.name for m in self.members) + ")"
        self.last_notes: list[str] = []
        self.reset()

    def reset(self) -> None:
        """Forget every loss (a new trace, a new set of series)."""
        self.loss: FloatArray | None = None  # (n_series, k) average relative losses
        # (origin's grid index, step) -> (target epoch s, member quantiles (k, n, Q), levels)
        self._pending: dict[tuple[int, int], tuple[float, FloatArray, FloatArray]] = {}
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

    def weights(self, n_series: int) -> FloatArray:
        """Current weights ``(n_series, k)`` (every member healthy)."""
        loss = self._losses(n_series)
        logits = self.log_prior[None, :] - self.eta * loss
        w = np.exp(logits - logits.max(axis=1, keepdims=True))
        return np.asarray(w / w.sum(axis=1, keepdims=True))

    def _losses(self, n_series: int) -> FloatArray:
        if self.loss is None or self.loss.shape[0] != n_series:
            self.loss = np.ones((n_series, len(self.members)))
            self._pending.clear()
        return self.loss

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
            out[k] = self._combine(member_q[:, k])
            first = start_time + o * interval_s  # epoch s of the interval forecast first
            grid = round(first / interval_s)
            for h in range(horizon):  # every step is scored once its target is seen
                self._pending.setdefault(
                    (grid, h), (first + h * interval_s, member_q[:, k, :, h, :].copy(), lv)
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

    def _combine(self, member_q: FloatArray) -> FloatArray:
        """Weighted quantile average of ``member_q`` ``(k, n, H, Q)`` -> ``(n, H, Q)``;
        members that failed on a series get no weight there (NaN where all failed)."""
        healthy = np.isfinite(member_q).all(axis=(2, 3)).T  # (n, k)
        w = self.weights(member_q.shape[1]) * healthy
        total = w.sum(axis=1, keepdims=True)
        w = np.divide(w, total, out=np.zeros_like(w), where=total > 0)
        pooled = np.einsum("nk,knhq->nhq", w, np.nan_to_num(member_q))
        return np.asarray(np.where(total[:, :, None] > 0, pooled, np.nan))

    # -- learning ---------------------------------------------------------------------
    def _learn(self, history: FloatArray, start: float, interval_s: float, origin: int) -> None:
        """Score the pending forecasts whose target is a column of ``history`` before
        ``origin`` (the column a target's epoch s falls on, ``start`` being column 0's)."""
        due = []
        for key, (t, _, _) in self._pending.items():
            col = (t - start) / interval_s
            c = round(col)
            if abs(col - c) < 0.25 and 0 <= c < origin:
                due.append((t, key, c))
        for _, key, c in sorted(due):
            _, q, lv = self._pending.pop(key)
            self._score(q, lv, history[:, c])

    def _score(self, q: FloatArray, levels: FloatArray, actual: FloatArray) -> None:
        """Update the losses with one forecast ``q`` ``(k, n, Q)`` of ``actual`` ``(n,)``."""
        assert self.loss is not None
        diff = actual[None, :, None] - q  # (k, n, Q)
        pinball = np.maximum(levels * diff, (levels - 1.0) * diff).mean(axis=2)  # (k, n)
        pinball = pinball.T  # (n, k)
        ok = np.isfinite(pinball)
        count = ok.sum(axis=1, keepdims=True)
        total = np.where(ok, pinball, 0.0).sum(axis=1, keepdims=True)
        mean = np.divide(total, count, out=np.zeros_like(total), where=count > 0)
        usable = (count > 0) & (mean > 0) & np.isfinite(actual)[:, None]
        if not usable.any():
            return
        relative = np.divide(pinball, mean, out=np.ones_like(pinball), where=usable & ok)
        update = usable & ok
        self.loss = np.where(
            update, self.decay * self.loss + (1 - self.decay) * relative, self.loss
        )

    def _forget(self, start: float, interval_s: float) -> None:
        """Drop forecasts whose target the history no longer reaches, and the oldest
        beyond :data:`PENDING`."""
        gone = [k for k, (t, _, _) in self._pending.items() if t < start - 0.25 * interval_s]
        for key in gone:
            del self._pending[key]
        while len(self._pending) > PENDING:
            del self._pending[min(self._pending)]
