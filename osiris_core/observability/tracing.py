"""Distributed tracing: W3C trace context in NATS headers, spans per handler, OTLP/HTTP export.

Off unless `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set when
the runtime starts: then `setup()` imports the OpenTelemetry SDK, exports spans in batches
over OTLP/HTTP (protobuf) and sets `ON`. While it is off, every hook below is behind one
check of `ON` at its call site (`if tracing.ON:`) and OpenTelemetry is never imported.

Spans (the names FastStream's NATS middleware uses, after the messaging conventions):

- `{subject} request` (CLIENT) around `Bus.request` / `Bus.stream`; `{subject} publish`
  (PRODUCER) around `Bus.publish`. Their context travels in the message's headers
  (`traceparent`, `tracestate`, `baggage`; `OTEL_PROPAGATORS` honoured).
- `{subject} process` (SERVER) around an actor's request handler: a child of the caller's
  span, with the queue wait, the service time and, for model actors, the tokens
  (`gen_ai.usage.input_tokens` / `output_tokens`).
- `{subject} process` (CONSUMER) per event an event handler takes, a child of (and linked
  to) the span that published it — also for events of a batch, and for durable events
  redelivered later.
- `{METHOD} {route}` (SERVER) in the gateway, continuing an incoming `traceparent`.

While a handler's span is current, `osiris_core.observability.logctx.TRACE_ID` / `SPAN_ID` name it: JSON log
lines, Sentry tags and metric exemplars carry the ids.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from contextvars import Token
from typing import TYPE_CHECKING, Any

from osiris_core.observability import logctx

if TYPE_CHECKING:
    from osiris_core.observability.usage import Usage

__all__ = ["ON", "ENDPOINT_ENVS", "Outgoing", "Processing", "consumer_spans", "enabled",
           "outgoing", "processing", "setup", "shutdown"]

log = logging.getLogger("osiris.tracing")
ENDPOINT_ENVS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
SHUTDOWN_FLUSH_S = 5.0

ON = False
"""Whether spans are made and exported (set by `setup`); hooks check it first."""
_tracer: Any = None
_provider: Any = None


def enabled(env: Mapping[str, str] | None = None) -> bool:
    """Whether the environment asks for traces (an OTLP endpoint is set and the SDK is not
    disabled with `OTEL_SDK_DISABLED=true`)."""
    env = os.environ if env is None else env
    if str(env.get("OTEL_SDK_DISABLED", "")).strip().lower() == "true":
        return False
    return any(str(env.get(k, "")).strip() for k in ENDPOINT_ENVS)


def setup(service_name: str, *, instance: str = "") -> bool:
    """Start exporting when the environment asks for it (once per process; later calls are
    no-ops). `service_name` is the default `service.name` — `OTEL_SERVICE_NAME` (or
    `service.name` in `OTEL_RESOURCE_ATTRIBUTES`) wins. Returns whether tracing is on."""
    global ON, _tracer, _provider
    if ON or not enabled():
        return ON
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    attrs: dict[str, Any] = {"service.namespace": "osiris"}
    if instance:
        attrs["service.instance.id"] = instance
    resource = Resource.create(attrs)
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": service_name}))
    provider = TracerProvider(resource=resource)  # the sampler: OTEL_TRACES_SAMPLER[_ARG]
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _provider = provider
    _tracer = provider.get_tracer("osiris")
    ON = True
    log.info("tracing: exporting spans of %s over OTLP/HTTP to %s",
             resource.attributes.get("service.name"),
             os.environ.get(ENDPOINT_ENVS[1]) or os.environ.get(ENDPOINT_ENVS[0]))
    return True


def shutdown(timeout: float = SHUTDOWN_FLUSH_S) -> None:
    """Export what is still buffered (bounded) — the runtime calls it when it stops."""
    if _provider is not None:
        try:
            _provider.force_flush(int(timeout * 1000))
        except Exception:  # noqa: BLE001 - a collector that is down must not hold the exit
            log.warning("tracing: could not flush the last spans", exc_info=True)


def _attrs(subject: str, operation: str) -> dict[str, Any]:
    return {"messaging.system": "nats", "messaging.destination.name": subject,
            "messaging.operation.type": operation}


def _fail(span: Any, code: int, message: str) -> None:
    from opentelemetry.trace import Status, StatusCode

    span.set_attribute("osiris.error.code", code)
    if code >= 500:
        span.set_status(Status(StatusCode.ERROR, message[:500]))
    else:
        span.set_attribute("osiris.error.message", message[:500])


class Outgoing:
    """The span of one request, stream or publish this process sends; `headers` carry its
    context to the receiver. `end(error)` once the reply (or the failure) is in."""

    __slots__ = ("headers", "span")

    def __init__(self, span: Any, headers: dict[str, str]) -> None:
        self.span = span
        self.headers = headers

    def end(self, error: BaseException | None = None) -> None:
        if error is not None:
            from osiris_core.errors import ServiceError

            if isinstance(error, ServiceError):
                _fail(self.span, error.code, error.message)
            else:
                from opentelemetry.trace import Status, StatusCode

                self.span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
        self.span.end()


def outgoing(subject: str, kind: str, headers: Mapping[str, str] | None) -> Outgoing:
    """Start the span of an outgoing `request` (CLIENT) or `publish` (PRODUCER), a child of
    the current span — or, outside any span, of a `traceparent` the caller put in `headers`
    (a client continuing its own trace) — and the headers to send with its context
    injected."""
    from opentelemetry import propagate, trace
    from opentelemetry.trace import SpanKind

    parent = None
    if headers and "traceparent" in headers \
            and not trace.get_current_span().get_span_context().is_valid:
        parent = propagate.extract(dict(headers))
    span_kind = SpanKind.PRODUCER if kind == "publish" else SpanKind.CLIENT
    span = _tracer.start_span(f"{subject} {kind}", context=parent, kind=span_kind,
                              attributes=_attrs(subject, "send" if kind == "request" else kind))
    carrier = dict(headers or {})
    propagate.inject(carrier, context=trace.set_span_in_context(span))
    return Outgoing(span, carrier)


class Processing:
    """The current span of one request an actor serves (or of the gateway's HTTP request):
    it is the parent of whatever the handler sends, and the log context names it."""

    __slots__ = ("_ids", "_token", "span")

    def __init__(self, span: Any, parent: Any = None) -> None:
        """`parent`: the context extracted from the incoming headers; its baggage stays
        current with the span, so whatever the handler sends carries it on."""
        from opentelemetry import context, trace

        self.span = span
        self._token: Token[Any] | None = context.attach(trace.set_span_in_context(span, parent))
        sc = span.get_span_context()
        self._ids = (logctx.TRACE_ID.set(f"{sc.trace_id:032x}"),
                     logctx.SPAN_ID.set(f"{sc.span_id:016x}"))

    def end(self, code: int | None = None, message: str = "", *, queue_wait_s: float = 0.0,
            service_s: float | None = None, usage: Usage | None = None) -> None:
        """Record the outcome and close the span (in the task that opened it)."""
        from opentelemetry import context

        span = self.span
        if queue_wait_s:
            span.set_attribute("osiris.queue_wait_s", round(queue_wait_s, 6))
        if service_s is not None:
            span.set_attribute("osiris.service_s", round(service_s, 6))
        if usage is not None and usage.any:
            span.set_attribute("gen_ai.usage.input_tokens", usage.prompt_tokens)
            span.set_attribute("gen_ai.usage.output_tokens", usage.completion_tokens)
        if code is not None:
            _fail(span, code, message)
        span.end()
        logctx.SPAN_ID.reset(self._ids[1])
        logctx.TRACE_ID.reset(self._ids[0])
        if self._token is not None:
            context.detach(self._token)
            self._token = None


def processing(subject: str, headers: Mapping[str, str] | None, *, actor: str, node: str,
               start_ns: int | None = None, kind: str = "server",
               name: str | None = None, attributes: Mapping[str, Any] | None = None) -> Processing:
    """Start (and make current) the span of a request `actor` serves on `subject`: a child of
    the context in `headers`, or a new trace when they carry none. With a `name` (the
    gateway's HTTP span) it carries only the `attributes` given, no messaging ones."""
    from opentelemetry import propagate
    from opentelemetry.trace import SpanKind

    parent = propagate.extract(dict(headers)) if headers else None
    attrs = _attrs(subject, "process") if name is None else {}
    attrs["osiris.actor"] = actor
    attrs["osiris.node"] = node
    if attributes:
        attrs.update(attributes)
    span = _tracer.start_span(name or f"{subject} process", context=parent,
                              kind=SpanKind.SERVER if kind == "server" else SpanKind.CONSUMER,
                              attributes=attrs, start_time=start_ns)
    return Processing(span, parent)


class ConsumerSpans:
    """The spans of the events one event-handler call takes (one, or a batch): each a child
    of, and linked to, the span that published it. The first is current while the handler
    runs (its log lines name it)."""

    __slots__ = ("current", "spans")

    def __init__(self, spans: list[Any], parent: Any = None) -> None:
        self.spans = spans
        self.current = Processing(spans[0], parent) if spans else None

    def end(self, error: str | None) -> None:
        """Close them all at the same time (a batch is handled as one)."""
        end_ns = time.time_ns()
        for span in self.spans[1:]:
            if error is not None:
                _fail(span, 500, error)
            span.end(end_time=end_ns)
        if self.current is not None:
            self.current.end(500 if error is not None else None, error or "")


def consumer_spans(events: Sequence[tuple[str, Mapping[str, str] | None]], *, actor: str,
                   node: str, durable: bool) -> ConsumerSpans:
    """Start one CONSUMER span per event of a handler call (`events`: each one's subject
    and headers)."""
    from opentelemetry import propagate, trace
    from opentelemetry.trace import Link, SpanKind

    spans, parents = [], []
    for subject, h in events:
        parent = propagate.extract(dict(h)) if h else None
        parents.append(parent)
        sc = trace.get_current_span(parent).get_span_context() if parent is not None else None
        links = [Link(sc)] if sc is not None and sc.is_valid else None
        attrs = _attrs(subject, "process")
        attrs.update({"osiris.actor": actor, "osiris.node": node, "osiris.durable": durable})
        if len(events) > 1:
            attrs["messaging.batch.message_count"] = len(events)
        spans.append(_tracer.start_span(f"{subject} process", context=parent,
                                        kind=SpanKind.CONSUMER, links=links, attributes=attrs))
    # the context current in the handler: the first event's (its baggage goes on with what
    # the handler sends) when every event of the call carries the same baggage; with mixed
    # baggage none is current, so one event's baggage never rides on another's messages
    same = len({(h or {}).get("baggage") for _, h in events}) == 1
    return ConsumerSpans(spans, parents[0] if parents and same else None)
