"""Per-actor Prometheus metrics of one process (docs/observability.md#metrics).

One `ProcessMetrics` per `Runtime`, with a registry of its own (never prometheus_client's
global one: tests run several runtimes in one process). Each `ActorCell` gets an
`ActorMetrics` view whose label children are made once per endpoint, subject or code, so
what a request costs is a dict lookup or two and the observations. What is already known
as a number on the cell (requests in flight and waiting, the lifecycle state) is read when
a scrape collects, not kept up to date per request.

The process's metrics are served by the gateway's `/metrics` (with its own `osiris_gateway_*`
ones) when the gateway runs in the process, and by `MetricsServer` — a small HTTP endpoint
in a thread of its own — where `[osiris].metrics_listen` says, or on `DEFAULT_LISTEN` when
`ENABLE_METRICS` is truthy and no gateway runs here. `ENABLE_METRICS` false turns both off.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.samples import Exemplar
from prometheus_client.utils import floatToGoString

from osiris_core.observability.logctx import TRACE_ID
from osiris_core.runtime.lifecycle import State

if TYPE_CHECKING:
    from osiris_core.observability.usage import Usage

__all__ = [
    "BUCKETS",
    "DEFAULT_LISTEN",
    "ENABLE_METRICS",
    "ActorMetrics",
    "EndpointMetrics",
    "MetricsServer",
    "ProcessMetrics",
    "exposition",
    "metrics_enabled",
    "parse_listen",
]

log = logging.getLogger("osiris.metrics")

ENABLE_METRICS = "ENABLE_METRICS"
DEFAULT_LISTEN = "0.0.0.0:9464"
"""Where a process without a gateway serves `/metrics` when `ENABLE_METRICS` is truthy
(9464: the port the OpenTelemetry Prometheus exporter uses by convention)."""
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
           60, 120)
"""Seconds: a cached lookup (sub-millisecond) up to a long generation (two minutes)."""
BUCKETS_NS = tuple(int(b * 1e9) for b in BUCKETS)
"""The same bounds in integer nanoseconds, for the per-request bisect."""
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}

LiveFacts = tuple[int, int, State]
"""(requests in flight, requests waiting for a slot, state) of one actor, read at scrape."""


def metrics_enabled(environ: Mapping[str, str] | None = None) -> bool | None:
    """`ENABLE_METRICS`: True when truthy (1, true, yes, on), False when false (0, false, no,
    off), None when unset or empty (the defaults apply: the gateway's /metrics on, no extra
    listener). Any other value is logged and read as unset."""
    env = os.environ if environ is None else environ
    value = str(env.get(ENABLE_METRICS, "")).strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    if value:
        log.warning("%s=%r is neither true (1, true, yes, on) nor false (0, false, no, off): "
                    "ignored", ENABLE_METRICS, env.get(ENABLE_METRICS))
    return None


def parse_listen(value: str) -> tuple[str, int]:
    """`host:port`, `:port` (every interface) or `[v6]:port` → (host, port); ValueError else."""
    host, sep, port = value.strip().rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"expected host:port (e.g. 0.0.0.0:9464), got {value!r}")
    host = host.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host or "0.0.0.0", int(port)


class _Live(Collector):
    """Gauges computed at scrape time from the cells (no per-request cost)."""

    def __init__(self, actors: dict[str, Callable[[], LiveFacts]]) -> None:
        self.actors = actors

    def describe(self) -> Iterable[Metric]:
        return self._families()

    def collect(self) -> Iterable[Metric]:
        in_flight, waiting, state = self._families()
        for name, live in list(self.actors.items()):
            flying, queued, current = live()
            in_flight.add_metric([name], flying)
            waiting.add_metric([name], queued)
            for s in State:
                state.add_metric([name, s.value], 1.0 if s is current else 0.0)
        return in_flight, waiting, state

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
        return (
            GaugeMetricFamily("osiris_actor_requests_in_flight",
                              "Requests an actor holds a concurrency slot for", labels=["actor"]),
            GaugeMetricFamily("osiris_actor_requests_waiting",
                              "Requests waiting for one of an actor's concurrency slots",
                              labels=["actor"]),
            GaugeMetricFamily("osiris_actor_state",
                              "1 for the actor's current lifecycle state, 0 for the others",
                              labels=["actor", "state"]),
        )


class ProcessMetrics:
    """The metrics of every actor of one process, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        # requests: plain numbers the event loop adds to, read at scrape (`_Requests`)
        self._requests: dict[tuple[str, str], EndpointMetrics] = {}
        r.register(_Requests(self._requests))
        self.restarts = Counter(
            "osiris_actor_restarts_total",
            "New instances started after a crash or at an operator's request",
            ["actor", "reason"], registry=r)
        self.pauses = Counter("osiris_actor_pauses_total", "Completed pauses", ["actor"],
                              registry=r)
        self.resumes = Counter("osiris_actor_resumes_total", "Completed resumes", ["actor"],
                               registry=r)
        self.tokens = Counter("osiris_actor_tokens_total",
                              "Tokens model actors processed (prompt) and generated (completion)",
                              ["actor", "kind"], registry=r)
        self.events = Counter("osiris_actor_events_total",
                              "Events handed to an actor's handlers, by subscription and outcome",
                              ["actor", "subject", "outcome"], registry=r)
        self.event_duration = Histogram(
            "osiris_actor_event_duration_seconds",
            "Time an event handler call took (a batch handler's call counts once)",
            ["actor", "subject"], buckets=BUCKETS, registry=r)
        self.consumer_pending = Gauge(
            "osiris_consumer_pending_messages",
            "Messages of a JetStream consumer not yet delivered (its last fetch, or the server "
            "every 10 s)",
            ["actor", "consumer"], registry=r)
        self.dead_letters = Counter("osiris_actor_dead_letters_total",
                                    "Durable events moved to osiris.deadletter",
                                    ["actor", "subject"], registry=r)
        self._live: dict[str, Callable[[], LiveFacts]] = {}
        r.register(_Live(self._live))

    def actor(self, name: str, live: Callable[[], LiveFacts] | None = None) -> ActorMetrics:
        """The view of one actor; `live` gives its in-flight, waiting and state at scrape."""
        if live is not None:
            self._live[name] = live
        return ActorMetrics(self, name)

    def render(self, accept: str | None = None) -> tuple[bytes, str]:
        """(body, content type) for a scraper's `Accept` header."""
        return exposition(accept, self.registry)


class EndpointMetrics:
    """One endpoint's request counts, histograms and exemplars as plain numbers.

    The event loop adds to them (a request costs a dict update, two bisects and four
    additions: prometheus_client's children take a lock per increment, five per request,
    which the actor round-trip bench saw as ~15 µs); a scrape, in another thread, copies
    them. Under the GIL each number is read whole; a scrape racing a request may count it
    in one series and not yet in another, which the next scrape evens out."""

    __slots__ = ("codes", "duration", "duration_ns", "exemplars", "wait", "wait_ns")

    def __init__(self) -> None:
        self.codes: dict[int, int] = {200: 0}
        self.duration = [0] * (len(BUCKETS) + 1)  # per bucket (not cumulative); last: +Inf
        self.duration_ns = 0  # sums in integer nanoseconds: no float work per request
        self.wait = [0] * (len(BUCKETS) + 1)
        self.wait_ns = 0
        self.exemplars: dict[int, tuple[str, float, float]] = {}  # bucket → trace, value, ts

    def served(self, code: int, service_ns: int, wait_ns: int) -> None:
        """One answered request (the dispatcher's hot path: kept to a few operations)."""
        codes = self.codes
        codes[code] = codes.get(code, 0) + 1
        i = bisect_left(BUCKETS_NS, service_ns)  # le is inclusive: the first bound >= it
        self.duration[i] += 1
        self.duration_ns += service_ns
        self.wait[bisect_left(BUCKETS_NS, wait_ns)] += 1
        self.wait_ns += wait_ns
        trace = TRACE_ID.get()
        if trace:
            self.exemplars[i] = (trace, service_ns / 1e9, time.time())


_LE = [*(floatToGoString(b) for b in BUCKETS), "+Inf"]  # type: ignore[no-untyped-call]


def _buckets(counts: list[int], exemplars: Mapping[int, tuple[str, float, float]]
             ) -> list[tuple[str, float] | tuple[str, float, Exemplar]]:
    out: list[tuple[str, float] | tuple[str, float, Exemplar]] = []
    total = 0
    for i, n in enumerate(counts):
        total += n
        le = _LE[i]
        ex = exemplars.get(i)
        out.append((le, total, Exemplar({"trace_id": ex[0]}, ex[1], ex[2])) if ex
                   else (le, total))
    return out


class _Requests(Collector):
    """`osiris_actor_requests_total`, `…_request_duration_seconds` and
    `…_queue_wait_seconds` of every endpoint, from the `EndpointMetrics` numbers at scrape."""

    def __init__(self, endpoints: dict[tuple[str, str], EndpointMetrics]) -> None:
        self.endpoints = endpoints

    def describe(self) -> Iterable[Metric]:
        return self._families()

    def collect(self) -> Iterable[Metric]:
        requests, duration, wait = self._families()
        for (actor, endpoint), ep in list(self.endpoints.items()):
            for code, n in list(ep.codes.items()):
                requests.add_metric([actor, endpoint, str(code)], n)
            duration.add_metric([actor, endpoint], _buckets(list(ep.duration),
                                                            dict(ep.exemplars)),
                                 ep.duration_ns / 1e9)
            wait.add_metric([actor, endpoint], _buckets(list(ep.wait), {}), ep.wait_ns / 1e9)
        return requests, duration, wait

    @staticmethod
    def _families() -> tuple[CounterMetricFamily, HistogramMetricFamily, HistogramMetricFamily]:
        return (
            CounterMetricFamily(
                "osiris_actor_requests",
                "Requests an actor answered, by endpoint and code (200, else the error's code)",
                labels=["actor", "endpoint", "code"]),
            HistogramMetricFamily(
                "osiris_actor_request_duration_seconds",
                "Service time of a request: from the actor taking it up to its reply",
                labels=["actor", "endpoint"]),
            HistogramMetricFamily(
                "osiris_actor_queue_wait_seconds",
                "Time from a request's arrival until the actor served it (a slot, a start or "
                "a pause in between)", labels=["actor", "endpoint"]),
        )


class ActorMetrics:
    """One actor's label children, made once each and cached."""

    __slots__ = ("_children", "_endpoints", "_events", "_pm", "name")

    def __init__(self, pm: ProcessMetrics, name: str) -> None:
        self._pm = pm
        self.name = name
        self._children: dict[tuple[Any, ...], Any] = {}
        self._endpoints: dict[str, EndpointMetrics] = {}
        self._events: dict[str, tuple[Any, ...]] = {}
        # these series exist (at 0) from the start: increase() needs a value before the first
        self._child(pm.restarts, "crash")
        self._child(pm.pauses)
        self._child(pm.resumes)

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(self.name, *labels)
        return child

    def endpoint(self, endpoint: str) -> EndpointMetrics:
        """An endpoint's children; its series exist (at 0) from the first call on, so the
        cell makes them at start: rate() and increase() need a value before the first."""
        ep = self._endpoints.get(endpoint)
        if ep is None:
            ep = self._endpoints[endpoint] = self._pm._requests.setdefault(
                (self.name, endpoint), EndpointMetrics())
        return ep

    def request(self, endpoint: str, code: int, service_s: float, queue_wait_s: float,
                used: Usage | None = None) -> None:
        """One answered request; the duration carries the trace id as its exemplar. (The
        dispatcher calls `endpoint(...).served` and `tokens` directly: the same, cheaper.)"""
        (self._endpoints.get(endpoint) or self.endpoint(endpoint)).served(
            code, int(service_s * 1e9), int(queue_wait_s * 1e9))
        if used is not None:
            self.tokens(used)

    def tokens(self, used: Usage) -> None:
        """The tokens a request used (model actors only: the series come with use)."""
        if used.any:
            self._child(self._pm.tokens, "prompt").inc(used.prompt_tokens)
            self._child(self._pm.tokens, "completion").inc(used.completion_tokens)

    def refused(self, endpoint: str, code: int) -> None:
        """A request answered without being served (the dispatcher's overload 503)."""
        codes = (self._endpoints.get(endpoint) or self.endpoint(endpoint)).codes
        codes[code] = codes.get(code, 0) + 1

    def subscription(self, subject: str, durable: bool = False) -> tuple[Any, ...]:
        """A subscription's children (and, when durable, its dead-letter counter), made at
        start like the endpoints' so that the first event or dead letter is an increase."""
        children = self._events.get(subject)
        if children is None:
            pm = self._pm
            children = self._events[subject] = (
                pm.events.labels(self.name, subject, "ok"),
                pm.events.labels(self.name, subject, "error"),
                pm.event_duration.labels(self.name, subject))
        if durable:
            self._child(self._pm.dead_letters, subject)
        return children

    def event(self, subject: str, ok: bool, count: int, seconds: float) -> None:
        """One handler call for `count` events of the subscription `subject`."""
        children = self._events.get(subject) or self.subscription(subject)
        children[0 if ok else 1].inc(count)
        trace = TRACE_ID.get()
        if trace:
            children[2].observe(seconds, {"trace_id": trace})
        else:
            children[2].observe(seconds)

    def restarted(self, reason: str) -> None:
        """A new instance starts: `crash` (the supervisor's restart) or `operator`."""
        self._child(self._pm.restarts, reason).inc()

    def paused(self) -> None:
        self._child(self._pm.pauses).inc()

    def resumed(self) -> None:
        self._child(self._pm.resumes).inc()

    def consumer_pending(self, consumer: str, pending: int) -> None:
        self._child(self._pm.consumer_pending, consumer).set(pending)

    def dead_letter(self, subject: str) -> None:
        self._child(self._pm.dead_letters, subject).inc()


class _Union(Collector):
    def __init__(self, registries: Iterable[Collector]) -> None:
        self.registries = list(registries)

    def collect(self) -> Iterator[Metric]:
        for r in self.registries:
            yield from r.collect()


def exposition(accept: str | None, *registries: Collector) -> tuple[bytes, str]:
    """The registries in one exposition: OpenMetrics (the only format that carries exemplars)
    when `accept` asks for `application/openmetrics-text`, else the classic text format."""
    encoder, content_type = choose_encoder(accept or "")
    source = registries[0] if len(registries) == 1 else _Union(registries)
    return encoder(source), content_type


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if urlsplit(self.path).path != "/metrics":
            self._send(404, b"not found: the metrics are at /metrics\n",
                       "text/plain; charset=utf-8")
            return
        try:
            body, content_type = exposition(self.headers.get("Accept"), self.server.registry)
        except Exception as e:  # noqa: BLE001 - a failed scrape is that scrape's 500
            log.exception("metrics: collecting failed")
            self._send(500, f"collecting the metrics failed: {e!r}\n".encode(),
                       "text/plain; charset=utf-8")
            return
        self._send(200, body, content_type)

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - scrapes are quiet
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    registry: Collector


class MetricsServer:
    """`GET /metrics` of one registry on `host:port`, served by a daemon thread (never by
    the event loop); anything else is a 404."""

    def __init__(self, registry: Collector, host: str, port: int) -> None:
        self.registry = registry
        self.host = host
        self.port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> tuple[str, int]:
        """Bind and serve; the bound (host, port). Raises OSError (a port in use …)."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        server_cls = type("_BoundServer", (_Server,), {"address_family": family})
        server = server_cls((self.host, self.port), _Handler)
        server.registry = self.registry
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="osiris-metrics", daemon=True)
        self._thread.start()
        bound = server.server_address
        self.port = int(bound[1])  # the one the system chose for port 0
        return self.host, self.port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        with contextlib.suppress(Exception):
            server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(2.0)
