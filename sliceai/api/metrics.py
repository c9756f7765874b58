"""Prometheus metrics of one service, in its own registry (several servers per process are fine).

Per slice and direction (labels ``slice``, ``direction`` = dl/ul):
``sliceai_allocation_bps``, ``sliceai_demand_bps`` (merged measurement),
``sliceai_forecast_bps`` (the quantile at 1 - risk the plan was sized for),
``sliceai_violations_total`` (intervals whose measured demand exceeded the
allocation that was in force). Per service: ``sliceai_plan_compute_seconds``
(forecast + solve), ``sliceai_loop_latency_seconds`` (from the telemetry that
closed an interval to the plan being published), ``sliceai_plans_total{mode}``,
``sliceai_telemetry_samples_total``, ``sliceai_stale_sources``,
``sliceai_policy_version``, ``sliceai_grants``, ``sliceai_limit_hits_total{limit}``
(requests refused by a limit, by the limit's name). With ``serve --adapt``
(:mod:`sliceai.api.adapt`): ``sliceai_model_adaptations_total{outcome}`` (rounds:
swapped, kept, skipped, failed), ``sliceai_model_champion_crps`` and
``sliceai_model_challenger_crps`` (the last scored round's CRPS of the running model and
of the fine-tuned challenger on the held-back telemetry, relative to the mean load; NaN
before one) and ``sliceai_model_adaptation_seconds`` (the last round's duration).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from sliceai.api.metrics_http import MetricsServer, MetricsTls
from sliceai.engine import Engine, PlanRecord
from sliceai.engine.telemetry import CollectedTelemetry

_DIRS = ("dl", "ul")
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class AdaptationOutcome(Protocol):
    """What the metrics read of an adaptation round (:class:`sliceai.api.adapt.AdaptDecision`)."""

    @property
    def outcome(self) -> str: ...
    @property
    def champion_crps(self) -> float: ...
    @property
    def challenger_crps(self) -> float: ...
    @property
    def seconds(self) -> float: ...


class ServiceMetrics:
    """Updates the gauges and counters from every published plan."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        labels = ("slice", "direction")
        self.allocation = Gauge(
            "sliceai_allocation_bps", "Allocated rate, bit/s", labels, registry=r
        )
        self.demand = Gauge(
            "sliceai_demand_bps", "Measured demand (merged over sources), bit/s", labels, registry=r
        )
        self.forecast = Gauge(
            "sliceai_forecast_bps",
            "Forecast demand quantile at 1 - risk, bit/s",
            labels,
            registry=r,
        )
        self.violations = Counter(
            "sliceai_violations",
            "Intervals whose measured demand exceeded the allocation in force",
            labels,
            registry=r,
        )
        self.compute = Histogram(
            "sliceai_plan_compute_seconds",
            "Forecast + solve time per plan, s",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.latency = Histogram(
            "sliceai_loop_latency_seconds",
            "Last telemetry of an interval to plan published, s",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.plans = Counter("sliceai_plans", "Plans published, by mode", ("mode",), registry=r)
        self.samples = Counter("sliceai_telemetry_samples", "Slice samples ingested", registry=r)
        self.stale = Gauge("sliceai_stale_sources", "Telemetry sources currently stale", registry=r)
        self.policy_version = Gauge("sliceai_policy_version", "Running policy version", registry=r)
        self.grants = Gauge("sliceai_grants", "Standing MEC bandwidth grants", registry=r)
        self.limit_hits = Counter(
            "sliceai_limit_hits",
            "Requests refused by a limit (sliceai.engine.limits.Limits), by limit name",
            ("limit",),
            registry=r,
        )
        self.adaptations = Counter(
            "sliceai_model_adaptations",
            "Model adaptation rounds, by outcome",
            ("outcome",),
            registry=r,
        )
        self.champion_crps = Gauge(
            "sliceai_model_champion_crps",
            "Running model's CRPS / mean load on the last round's held-back telemetry",
            registry=r,
        )
        self.challenger_crps = Gauge(
            "sliceai_model_challenger_crps",
            "Fine-tuned challenger's CRPS / mean load on the same held-back telemetry",
            registry=r,
        )
        self.adaptation_seconds = Gauge(
            "sliceai_model_adaptation_seconds",
            "Duration of the last adaptation round, s",
            registry=r,
        )
        for gauge in (self.champion_crps, self.challenger_crps):
            gauge.set(float("nan"))
        self._previous: PlanRecord | None = None
        self._http: MetricsServer | None = None

    def attach(self, engine: Engine) -> None:
        engine.on_plan_callbacks.append(self.observe)
        engine.limit_hits.listeners.append(lambda name: self.limit_hits.labels(name).inc())

    def observe(self, plan: PlanRecord, tel: CollectedTelemetry) -> None:
        names = plan.policy.slice_names
        prev = self._previous
        in_force = None
        if prev is not None and prev.policy.slice_names == names:
            in_force = prev.rates_bps
        for i, name in enumerate(names):
            for d, dname in enumerate(_DIRS):
                self.allocation.labels(name, dname).set(plan.rates_bps[i, d])
                self.forecast.labels(name, dname).set(plan.forecast_bps[i, d])
                measured = plan.measured_bps[i, d]
                if not np.isnan(measured):
                    self.demand.labels(name, dname).set(measured)
                    if in_force is not None and measured > in_force[i, d] * (1 + 1e-9):
                        self.violations.labels(name, dname).inc()
        self.compute.observe(plan.compute_ms / 1000.0)
        if plan.latency_s is not None:
            self.latency.observe(plan.latency_s)
        self.plans.labels(plan.mode).inc()
        self.samples.inc(tel.samples)
        self.stale.set(len(tel.stale_sources))
        self.policy_version.set(plan.policy_version)
        self.grants.set(len(plan.grants))
        self._previous = plan

    def observe_adaptation(self, decision: AdaptationOutcome) -> None:
        """Count an adaptation round; a scored one sets the two CRPS gauges."""
        self.adaptations.labels(decision.outcome).inc()
        self.adaptation_seconds.set(decision.seconds)
        if np.isfinite(decision.champion_crps) and np.isfinite(decision.challenger_crps):
            self.champion_crps.set(decision.champion_crps)
            self.challenger_crps.set(decision.challenger_crps)

    def serve_http(
        self,
        port: int,
        addr: str = "127.0.0.1",
        tls: MetricsTls | None = None,
        allow_anonymous: bool = False,
    ) -> int:
        """Expose /metrics on ``addr:port`` (0 = any free port); returns the port.

        Plaintext on loopback only; :class:`sliceai.api.metrics_http.MetricsServer` has
        the rules. Raises :class:`sliceai.api.metrics_http.MetricsConfigError`.
        """
        self._http = MetricsServer(self.registry, addr, port, tls, allow_anonymous)
        return self._http.port

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None
