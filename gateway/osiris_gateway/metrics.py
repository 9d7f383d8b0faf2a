"""Prometheus metrics of one gateway app (its own registry: no global state).

Per route: requests by status, latency histogram, errors. Per actor: bus requests by
outcome and their latency. Plus live SSE subscriptions and rate-limit refusals.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from osiris_core.observability.metrics import BUCKETS  # one set of latency buckets for every histogram

__all__ = ["CONTENT_TYPE_LATEST", "GatewayMetrics", "metrics_middleware"]



class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("osiris_gateway_requests_total", "HTTP requests by route",
                                ["method", "route", "status"], registry=r)
        self.latency = Histogram("osiris_gateway_request_seconds", "HTTP request latency",
                                 ["method", "route"], buckets=BUCKETS, registry=r)
        self.errors = Counter("osiris_gateway_errors_total", "HTTP responses >= 400 by route",
                              ["route", "status"], registry=r)
        self.actor_requests = Counter("osiris_gateway_actor_requests_total",
                                      "Bus requests to actors by outcome",
                                      ["actor", "subject", "outcome"], registry=r)
        self.actor_latency = Histogram("osiris_gateway_actor_seconds",
                                       "Bus request latency per actor", ["actor"],
                                       buckets=BUCKETS, registry=r)
        self.actor_errors = Counter("osiris_gateway_actor_errors_total",
                                    "Failed bus requests per actor and status",
                                    ["actor", "status"], registry=r)
        self.sse_streams = Gauge("osiris_gateway_sse_streams", "Open SSE streams by kind",
                                 ["kind"], registry=r)
        self.sse_subscriptions = Gauge("osiris_gateway_sse_subscriptions",
                                       "NATS subscriptions held for SSE clients", registry=r)
        self.rate_limited_total = Counter("osiris_gateway_rate_limited_total",
                                          "Requests refused with 429", ["route"], registry=r)
        self.disconnects = Counter("osiris_gateway_client_disconnects_total",
                                   "Requests whose client left before the actor answered",
                                   ["actor"], registry=r)

        self._children: dict[tuple[Any, ...], Any] = {}

    def child(self, metric: Any, *labels: str) -> Any:
        """`metric.labels(*labels)`, cached (labels() takes a lock and builds a key)."""
        key = (id(metric), *labels)
        c = self._children.get(key)
        if c is None:
            c = self._children[key] = metric.labels(*labels)
        return c

    def actor_call(self, actor: str, subject: str, outcome: str, seconds: float) -> None:
        self.child(self.actor_requests, actor, subject, outcome).inc()
        self.child(self.actor_latency, actor).observe(seconds)
        if outcome != "ok":
            self.child(self.actor_errors, actor, outcome).inc()

    def rate_limited(self, route: str) -> None:
        self.rate_limited_total.labels(route).inc()


def metrics_middleware(app: Any) -> Any:
    """ASGI middleware (after routing): label by the route template, not the raw path."""

    async def middleware(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        m: GatewayMetrics = scope["app"].state.gw.metrics
        route = scope.get("path_template") or scope["path"]
        method = scope["method"]
        status = 500
        t0 = time.perf_counter()

        async def send_wrapper(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await app(scope, receive, send_wrapper)
        finally:
            m.child(m.requests, method, route, str(status)).inc()
            m.child(m.latency, method, route).observe(time.perf_counter() - t0)
            if status >= 400:
                m.child(m.errors, route, str(status)).inc()

    return middleware
