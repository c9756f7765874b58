"""The ``oracle`` allocator: each interval's exact demand plus its own backlog, and what
it is a lower bound of.

Algorithm
---------
The oracle sees the demand ``d_t`` (bit/s) of the interval it allocates, nothing later.
It runs its own copy of the replay's queues (a
:class:`~sliceai.replay.linkmodel.LinkModel`, the same buffer rule, on its own
allocations), so it knows the backlog ``b_{t-1}`` (bits) each slice carries into
interval ``t``, and allocates, per direction::

    maximise    sum_s alpha_s x_s
    subject to  floor_s <= x_s <= top_s = min(max_s, max(floor_s, d_s + b_s / T))
                sum_{s crosses l} x_s <= capacity_l                      (every link l)

with ``alpha_s = 128 / priority_s``, the cost's weight of a lost bit
(:func:`~sliceai.replay.metrics.alpha_of`): every floor first, then the demand and the
backlog, contested capacity going where a lost bit costs most. No reconfiguration price.
The LP is the solver's (:func:`sliceai.solver.lp.solve_directions`, exact: one segment
per slice above its floor, on the capacity the floors leave), not
:class:`~sliceai.solver.SliceSolver`'s objective: that one ranks every guaranteed slice
above every best-effort one, whatever their priorities, and a slice above any number of
less important ones on other links (priority tiers are lexicographic). Under shortage
both orders disagree with the cost, and claim 3 below fails with them (a priority-90
guaranteed slice, alpha 1.4, would be served before a priority-1 best-effort one, alpha
128).

Notation, per slice and direction, in bits per interval of ``T`` s: arrivals ``A_t``,
effective allocation ``C_t``, floor ``F`` and maximum ``K`` times ``T``; the link model
serves ``min(b_{t-1} + A_t, C_t)``, keeps up to ``beta C_t`` of the rest (``beta`` =
buffer in seconds / ``T``) and drops the remainder; ``D_t`` is the bits dropped up to
``t``. The cost (:mod:`sliceai.replay.metrics`) is ``alpha sum drop_t + sum (C_t - A_t)+``:
backlog drained counts as overprovisioning (allocation above the interval's demand).
Compared allocators keep every slice within ``[floor, maximum]`` and every link within
capacity (all the registered ones do); the policy's floors fit every link (the loader
checks it) and its priority levels are 1..127, so ``alpha > 1``.

What it is a lower bound of (proved)
------------------------------------
1. **Traces that fit** (every interval: each slice's demand within its maximum, and on
   every link the slices' ``max(demand, floor)`` sum to at most the capacity, both
   directions): the oracle allocates ``max(demand, floor)``, never queues, drops nothing
   and has **no violation**; its cost is the floor slack ``sum (F - A_t)+``, and since
   every compared allocator has ``C_t >= F``, **no allocator costs less**. Proof: by
   induction ``b_{t-1} = 0``, so ``top = max(d, floor)``; the tops fit every link, so
   the LP takes them all, and the queue serves ``A_t`` whole.
2. **No link limits the oracle** (:attr:`OracleAllocator.contended_intervals` stays 0;
   sure when each link's capacity covers the sum of its slices' maxima): then
   ``C_t = clip(b_{t-1} + A_t, F, K)`` slice by slice, and for every slice and
   direction, whatever an allocator within the maxima does:

   a. at every ``t`` the oracle has **dropped the fewest bits**, ``D^o_t <= D_t``, and
      ``D^o_t + b^o_t <= D_t + b_t``. Induction on both: if ``b^o + A <= K`` the oracle
      serves all. Otherwise it serves ``K`` (the most anyone can) with the largest
      buffer ``beta K``: its rest ``r^o = b^o + A - K`` and the other's
      ``r = b + A - served >= b + A - K`` have ``D^o + r^o <= D + r``, so
      ``D^o_t + b^o_t = D^o + r^o <= D + r = D_t + b_t`` and
      ``D^o_t = max(D^o, D^o + r^o - beta K) <= max(D, D + r - beta C) = D_t``.
   b. **cost^o <= cost + b_end + sum_{t: A_t < F} min(b_{t-1}, F - A_t)**, the other's
      backlog left at the end (never charged) and the floor slack it spent on its own
      backlog (a free drain where the oracle paid to drain at once). For a slice without
      a floor whose queue ends empty, no allocator costs less. Proof: with
      ``M_t = max(F, A_t)``, ``(C - A)+ >= (F - A)+ + (served - M)+`` (equality for the
      oracle, whose ``C = max(F, served)``), and ``sum served = sum A - D - b_end``,
      so ``cost = sum (F - A)+ + (alpha - 1) D + sum A - b_end - sum min(served, M)``
      (``>=`` for the other). Subtract: ``(alpha - 1)(D^o - D) <= 0`` by (a), and
      ``min(served, M) - min(served^o, M)`` is ``<= 0`` where ``A >= F`` (the oracle
      serves ``min(A, K)`` at least) and ``<= min(b_{t-1}, F - A)`` where ``A < F``.
3. **Buffers that hold nothing** (in the limit ``buffer_budgets -> 0``, the oracle
   built with the replay's value): nothing carries over, an interval costs
   ``alpha (A - C)+ + (C - A)+`` per slice, and the LP minimises exactly that over the
   policy's allocations (no rate above ``max(A, F)`` pays; below it a bit is worth
   ``alpha``), shortage across links included: **no allocator costs less, on any
   trace**. This is what weighting by alpha buys.

What it is not
--------------
With queues and a shortage, no allocator that allocates interval ``t`` knowing only
intervals ``<= t`` is a lower bound on cost: what is cheapest depends on what comes
next. Three ways to beat the oracle, each with a test (``tests/replay/test_replay_oracle.py``):
the trace ends after a burst above the maximum (serve just the demand: the backlog left
at the end is never charged, the oracle pays to drain it); a burst followed by demand
under the floor (let the floor drain the backlog for free later); two slices sharing a
short link, the more important with the longer buffer (give both half: the important
slice's excess waits in its buffer for idle capacity instead of the other's being lost).
So ``cost/oracle`` below 1 is possible outside claims 1 to 3, and the oracle makes no
claim on violations in intervals that do not fit (a queue may trade delay against loss).

Its backlog is the replay's only when both use the same ``buffer_budgets``: build
``OracleAllocator(buffer_budgets=...)`` for a replay with other
:class:`~sliceai.replay.engine.ReplayOptions`.
"""

from __future__ import annotations

import numpy as np

from sliceai.policy import Policy
from sliceai.replay.allocators import FloatArray, PolicyAllocator, clean_load
from sliceai.replay.linkmodel import DEFAULT_BUFFER_BUDGETS, LinkModel
from sliceai.replay.metrics import alpha_of
from sliceai.solver.formulation import Segments
from sliceai.solver.highs_model import new_highs
from sliceai.solver.lp import DirectionProblem, solve_directions
from sliceai.solver.plan import fit_capacity
from sliceai.solver.problem import PolicyArrays


class OracleAllocator(PolicyAllocator):
    """Interval ``t``'s demand plus its own backlog, floors first, then by alpha (module doc).

    ``buffer_budgets``: the link model's buffer rule, as in the replay's options.
    ``contended_intervals``: intervals so far in which a link limited it (claim 2 holds
    when there are none).
    """

    name = "oracle"

    def __init__(self, buffer_budgets: float = DEFAULT_BUFFER_BUDGETS) -> None:
        self.buffer_budgets = buffer_budgets

    def start(
        self, policy: Policy, trace_slices: tuple[str, ...], interval_s: float, start_time: float
    ) -> None:
        super().start(policy, trace_slices, interval_s, start_time)
        arrays = PolicyArrays.of(policy)
        self.incidence = arrays.incidence
        self.capacity = arrays.capacity_bps
        self.scale = float(self.capacity.max())
        floors_on_links = arrays.incidence.astype(np.float64) @ self.floor  # (L, 2)
        self.room = np.maximum(self.capacity[:, None] - floors_on_links, 0.0) / self.scale
        self.slopes = np.array([[alpha_of(p)] for p in arrays.priority])  # (S, 1)
        self.queues = LinkModel(policy, interval_s, self.buffer_budgets)
        self.highs = [new_highs(), new_highs()]
        self.contended_intervals = 0

    def rates_for(self, need_bps: FloatArray) -> FloatArray:
        """The LP of the module doc for a wanted rate ``(S, 2)`` bit/s (demand plus backlog)."""
        top = np.minimum(np.maximum(need_bps, self.floor), self.cap)
        extra = (top - self.floor) / self.scale
        problems = [
            DirectionProblem(
                Segments(extra[:, d : d + 1], self.slopes, self.scale),
                self.incidence,
                self.room[:, d],
                highs=self.highs[d],
            )
            for d in range(2)
        ]
        results = solve_directions(problems)
        if any(r.method != "unconstrained" for r in results):
            self.contended_intervals += 1
        above = np.stack([r.rates for r in results], axis=1) * self.scale
        rates = self.floor + np.clip(above, 0.0, top - self.floor)
        out: FloatArray = fit_capacity(rates, self.incidence, self.capacity, self.floor)
        return out

    def allocate_chunk(self, load: FloatArray) -> FloatArray:
        demand = clean_load(load)
        out = np.empty_like(demand)
        for t in range(demand.shape[0]):
            out[t] = self.rates_for(demand[t] + self.queues.backlog / self.interval_s)
            self.queues.step(demand[t : t + 1], out[t : t + 1])
        return out
