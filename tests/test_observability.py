"""Structured logs (OSIRIS_LOG_FORMAT=json) and Sentry reports of a real `osiris run`."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import secrets
import subprocess
import sys
import threading
import zlib
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from osiris_core import Bus, ServiceError
from osiris_core.config import Config
from osiris_core.testing import OsirisProcess

CRASH = {"crash": True}


async def _fail_one_request(bus: Bus) -> None:
    with pytest.raises(ServiceError) as err:
        await bus.request("test.crashy.call", CRASH, timeout=10)
    assert err.value.code == 500


async def _wait_for(predicate: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def _json_lines(text: str) -> list[dict[str, Any]]:
    lines = [line for line in text.splitlines() if line.strip()]
    out = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            raise AssertionError(f"not a JSON line: {line!r}\n--- output:\n{text}") from None
    return out


async def test_json_logs_every_line_is_json_and_a_failed_request_names_actor_and_traceback(
    osiris_config: Callable[..., Config], bus: Bus
) -> None:
    cfg = osiris_config(plugins=["crashy"], node="obs-node")
    assert cfg.path is not None
    with OsirisProcess(cfg.path, env={"OSIRIS_LOG_FORMAT": "json"}) as proc:
        await _fail_one_request(bus)
        await _wait_for(lambda: '"level":"ERROR"' in proc.output(), "the ERROR line")
        proc.signal(15)
        assert proc.wait(30) == 0
    records = _json_lines(proc.output())
    assert any("osiris: ready" in r["message"] for r in records)
    for r in records:
        assert {"ts", "level", "logger", "message", "pid"} <= r.keys()
        assert r["ts"].endswith("Z") and r["node"] == "obs-node"
    errors = [r for r in records if r["level"] == "ERROR"]
    assert len(errors) == 1, errors
    err = errors[0]
    assert err["actor"] == "crashy" and err["logger"] == "osiris.crashy"
    assert err["subject"] == "test.crashy.call"
    assert "RuntimeError: fail on purpose" in err["exc"] and "Traceback" in err["exc"]
    assert "trace_id" not in err  # no tracing context: left out, not empty
    core = [r for r in records if r["logger"] == "osiris.runtime"]
    assert core and all("actor" not in r for r in core)


def test_a_bad_log_format_is_refused_naming_the_variable(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", "from osiris_core.cli import main; main()", "subjects"],
        env={**os.environ, "OSIRIS_LOG_FORMAT": "yaml"}, capture_output=True, text=True,
        timeout=60, cwd=tmp_path)
    assert done.returncode == 2
    assert "OSIRIS_LOG_FORMAT='yaml'" in done.stderr and "text or json" in done.stderr


# --- Sentry -----------------------------------------------------------------------------------
class _Envelopes(BaseHTTPRequestHandler):
    """A Sentry ingest endpoint: keeps the event items of every envelope posted to it."""

    events: list[dict[str, Any]]
    got: threading.Event

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        encoding = self.headers.get("Content-Encoding", "")
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        elif encoding == "br":
            import brotli  # type: ignore[import-not-found]

            body = brotli.decompress(body)
        for item_type, payload in _envelope_items(body):
            if item_type == "event":
                self.events.append(json.loads(payload))
                self.got.set()
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


def _envelope_items(body: bytes) -> Iterator[tuple[str, bytes]]:
    """Sentry envelope: a header line, then per item a header line and its payload (`length`
    bytes when the header says, else up to the next newline)."""
    _, _, rest = body.partition(b"\n")
    while rest.strip():
        line, _, rest = rest.partition(b"\n")
        header = json.loads(line)
        if "length" in header:
            payload, rest = rest[: header["length"]], rest[header["length"] + 1:]
        else:
            payload, _, rest = rest.partition(b"\n")
        yield header.get("type", ""), payload


@pytest.fixture
def sentry_endpoint() -> Iterator[tuple[str, type[_Envelopes]]]:
    handler = type("Envelopes", (_Envelopes,), {"events": [], "got": threading.Event()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://public@127.0.0.1:{server.server_address[1]}/1", handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


async def test_a_failing_handler_reaches_sentry_tagged_with_actor_subject_and_node(
    osiris_config: Callable[..., Config], bus: Bus,
    sentry_endpoint: tuple[str, type[_Envelopes]],
) -> None:
    dsn, received = sentry_endpoint
    cfg = osiris_config(plugins=["crashy"], node="obs-node")
    assert cfg.path is not None
    env = {"SENTRY_DSN": dsn, "SENTRY_ENV": "ci"}
    with OsirisProcess(cfg.path, env=env) as proc:
        await _fail_one_request(bus)
        got = await asyncio.to_thread(received.got.wait, 30)
        assert got, f"no Sentry event arrived:\n{proc.output()}"
    event = received.events[0]
    tags = event["tags"]
    tags = dict(tags) if isinstance(tags, list) else tags
    assert tags["actor"] == "crashy"
    assert tags["subject"] == "test.crashy.call"
    assert tags["node"] == "obs-node"
    assert "trace_id" not in tags
    assert event["environment"] == "ci" and event["logger"] == "osiris.crashy"
    assert event["exception"]["values"][-1]["type"] == "RuntimeError"


async def test_a_traced_failing_request_tags_its_sentry_event_with_the_callers_trace(
    osiris_config: Callable[..., Config], bus: Bus,
    sentry_endpoint: tuple[str, type[_Envelopes]],
) -> None:
    """Tracing on and a caller's `traceparent` on the request: the Sentry event of the failed
    handler carries that trace id, and the JSON line of the same failure names trace and span."""
    from osiris_core.testing.otlp import OtlpReceiver

    dsn, received = sentry_endpoint
    trace = secrets.token_hex(16)
    cfg = osiris_config(plugins=["crashy"], node="obs-node")
    assert cfg.path is not None
    with OtlpReceiver() as rx:
        env = {"SENTRY_DSN": dsn, "OTEL_EXPORTER_OTLP_ENDPOINT": rx.url,
               "OSIRIS_LOG_FORMAT": "json"}
        with OsirisProcess(cfg.path, env=env) as proc:
            with pytest.raises(ServiceError) as err:
                await bus.request("test.crashy.call", CRASH, timeout=10, headers={
                    "traceparent": f"00-{trace}-{secrets.token_hex(8)}-01"})
            assert err.value.code == 500
            got = await asyncio.to_thread(received.got.wait, 30)
            assert got, f"no Sentry event arrived:\n{proc.output()}"
            await _wait_for(lambda: '"level":"ERROR"' in proc.output(), "the ERROR line")
            proc.signal(15)
            assert proc.wait(30) == 0
        await _wait_for(lambda: any(s.trace_id == trace for s in rx.spans), "the span")
    tags = received.events[0]["tags"]
    tags = dict(tags) if isinstance(tags, list) else tags
    assert tags["trace_id"] == trace and tags["actor"] == "crashy"
    errors = [r for r in _json_lines(proc.output()) if r["level"] == "ERROR"]
    assert len(errors) == 1 and errors[0]["trace_id"] == trace, errors
    served = [s for s in rx.spans if s.trace_id == trace and s.kind == "server"]
    assert [s.span_id for s in served] == [errors[0]["span_id"]]
    assert served[0].attributes.get("osiris.error.code") == 500


def test_a_bad_sentry_dsn_stops_osiris_run_naming_the_variable(tmp_path: Path,
                                                                nats_url: str) -> None:
    from osiris_core.testing import write_config

    path = write_config(tmp_path / "osiris.toml", nats_url, ["crashy"])
    done = subprocess.run(
        [sys.executable, "-c", "from osiris_core.cli import main; main()", "run", "-c",
         str(path)],
        env={**os.environ, "SENTRY_DSN": "not-a-dsn"}, capture_output=True, text=True,
        timeout=60)
    assert done.returncode == 2, done.stderr
    assert "SENTRY_DSN is not a valid Sentry DSN" in done.stderr
