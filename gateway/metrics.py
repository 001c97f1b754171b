"""Prometheus metrics. Names are a contract: dashboards and alerts rely on them."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    """One registry per app, so tests and multiple apps in one process never collide."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "ttc_requests", "Requests by outcome", ["tenant", "model", "status"], registry=self.registry
        )
        self.duration = Histogram(
            "ttc_request_duration_seconds",
            "End-to-end request latency",
            ["tenant", "model"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.tokens = Counter("ttc_tokens", "Tokens by kind", ["tenant", "model", "kind"], registry=self.registry)
        self.cost = Counter("ttc_cost_usd", "Settled cost in USD", ["tenant", "model"], registry=self.registry)
        self.upstream_errors = Counter(
            "ttc_upstream_errors", "Upstream failures by kind", ["model", "kind"], registry=self.registry
        )
        self.budget_remaining = Gauge(
            "ttc_budget_remaining_usd", "Remaining budget in the tightest window", ["tenant", "window"],
            registry=self.registry,
        )
        self.router_decisions = Counter(
            "ttc_router_decisions", "Models chosen by the router", ["tenant", "model"], registry=self.registry
        )
        self.strategy_requests = Counter(
            "ttc_strategy_requests", "Requests by test-time-compute strategy", ["tenant", "strategy"],
            registry=self.registry,
        )
        # Rows the request log lost: its queue and its spool were both full (the disk is full).
        self.request_log_dropped = Counter(
            "ttc_request_log_dropped", "Request-log rows dropped (queue and spool full)", registry=self.registry
        )

        # Tenants with traffic since the budget gauges were last refreshed (off the hot path).
        self.active_tenants: set[str] = set()
        self._children: dict[tuple[Any, tuple[str, ...]], Any] = {}

    def child(self, metric: Counter | Histogram, *labels: str) -> Any:
        """metric.labels(*labels), memoized: prometheus_client takes a lock and rebuilds the key on every call."""
        key = (metric, labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def observe_request(self, tenant: str, model: str, status: str, duration_s: float) -> None:
        self.active_tenants.add(tenant)
        self.child(self.requests, tenant, model, status).inc()
        self.child(self.duration, tenant, model).observe(duration_s)

    def observe_call(self, tenant: str, model: str, prompt_tokens: int, completion_tokens: int, cost_usd: float) -> None:
        self.child(self.tokens, tenant, model, "prompt").inc(prompt_tokens)
        self.child(self.tokens, tenant, model, "completion").inc(completion_tokens)
        self.child(self.cost, tenant, model).inc(cost_usd)

    def render(self) -> bytes:
        return generate_latest(self.registry)
