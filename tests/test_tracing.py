"""Tracing switches (osiris_core.observability.tracing): off costs an import of nothing, on honours the
OpenTelemetry environment. The end-to-end trace across processes is in
gateway/tests/test_gateway_tracing.py."""

from __future__ import annotations

import os
import subprocess
import sys

from osiris_core.observability import tracing
from osiris_core.testing.otlp import OtlpReceiver


def _python(code: str, env: dict[str, str]) -> str:
    base = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    out = subprocess.run([sys.executable, "-c", code], env={**base, **env},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_off_the_runtime_bus_dispatcher_and_gateway_import_no_opentelemetry() -> None:
    code = ("import sys\n"
            "import osiris_core.runtime.node, osiris_core.nats.bus, osiris_core.runtime.dispatch\n"
            "import osiris_gateway.app\n"
            "from osiris_core import tracing\n"
            "assert tracing.setup('x') is False and not tracing.ON\n"
            "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n")
    assert _python(code, {}) == "[]"


def test_enabled_by_an_endpoint_unless_the_sdk_is_disabled() -> None:
    assert not tracing.enabled({})
    assert tracing.enabled({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"})
    assert tracing.enabled({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"})
    assert not tracing.enabled({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318",
                                "OTEL_SDK_DISABLED": "true"})


def test_otel_service_name_wins_over_the_default_and_spans_reach_the_receiver() -> None:
    code = ("from osiris_core import tracing\n"
            "assert tracing.setup('osiris-default', instance='node-7')\n"
            "out = tracing.outgoing('osiris.x.y', 'publish', {'k': 'v'})\n"
            "assert out.headers['k'] == 'v' and out.headers['traceparent'].startswith('00-')\n"
            "out.end()\n"
            "tracing.shutdown()\n")
    with OtlpReceiver() as rx:
        _python(code, {"OTEL_EXPORTER_OTLP_ENDPOINT": rx.url})
        _python(code, {"OTEL_EXPORTER_OTLP_ENDPOINT": rx.url, "OTEL_SERVICE_NAME": "mine"})
        spans = rx.wait_for(lambda s: len(s) == 2, timeout=10)
    assert sorted(s.service for s in spans) == ["mine", "osiris-default"]
    assert {(s.name, s.kind) for s in spans} == {("osiris.x.y publish", "producer")}


BAGGAGE = '''
from opentelemetry import baggage, context
from osiris_core.observability import tracing
assert tracing.setup("t")

def message(tenant):
    token = context.attach(baggage.set_baggage("tenant", tenant))
    try:
        out = tracing.outgoing("osiris.x", "publish", None)
    finally:
        context.detach(token)
    out.end()
    return out.headers

def sent_on(events):
    """The baggage of what a handler of `events` sends."""
    spans = tracing.consumer_spans(events, actor="a", node="n", durable=True)
    try:
        return tracing.outgoing("osiris.next", "publish", None).headers.get("baggage")
    finally:
        spans.end(None)

a, b = message("acme"), message("other")
print(sent_on([("osiris.x", a)]))
print(sent_on([("osiris.x", a), ("osiris.x", a)]))
print(sent_on([("osiris.x", a), ("osiris.x", b)]))
print(baggage.get_all())
tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
print(tracing.outgoing("osiris.y", "request", {"traceparent": tp}).headers["traceparent"][3:35])
tracing.shutdown()
'''


def test_an_event_handler_sends_its_events_baggage_on_but_a_mixed_batch_none() -> None:
    """A handler's messages carry the baggage of the event it took; a batch of events with
    different baggage runs with none current (one tenant's never rides on another's). A
    client outside any span continues the `traceparent` it put in the headers."""
    with OtlpReceiver() as rx:
        out = _python(BAGGAGE, {"OTEL_EXPORTER_OTLP_ENDPOINT": rx.url}).splitlines()
    assert out == ["tenant=acme", "tenant=acme", "None", "{}",
                   "4bf92f3577b34da6a3ce929d0e0e4736"], out
