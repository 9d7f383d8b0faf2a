"""Tracing switches (osiris_core.tracing): off costs an import of nothing, on honours the
OpenTelemetry environment. The end-to-end trace across processes is in
gateway/tests/test_gateway_tracing.py."""

from __future__ import annotations

import os
import subprocess
import sys

from osiris_core import tracing
from osiris_core.otlp_receiver import OtlpReceiver


def _python(code: str, env: dict[str, str]) -> str:
    base = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    out = subprocess.run([sys.executable, "-c", code], env={**base, **env},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_off_the_runtime_bus_dispatcher_and_gateway_import_no_opentelemetry() -> None:
    code = ("import sys\n"
            "import osiris_core.runtime, osiris_core.bus, osiris_core.dispatch\n"
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
