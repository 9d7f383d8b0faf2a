"""Per-actor Prometheus metrics (docs/observability.md#metrics): an actor-only `osiris run`
serves its actors' series on `[osiris].metrics_listen`; a restart and a dead letter move their
counters; the gateway's /metrics carries the actors of its process; ENABLE_METRICS=false turns
both off; a traced request leaves its trace id as an exemplar; model actors count tokens."""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import socket
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from osiris_core import Config, ServiceError
from osiris_core.errors import BadRequest, ConfigError
from osiris_core.nats.bus import Bus, connect
from osiris_core.nats.server import free_port
from osiris_core.observability.metrics import DEFAULT_LISTEN, parse_listen
from osiris_core.protocol import ControlReply
from osiris_core.runtime.node import Runtime
from osiris_core.testing import OsirisProcess, write_config

CALL = "test.metered.call"
EVENTS = "test.metered.events"
FAST = {"backoff_initial_s": 0.05, "backoff_max_s": 0.2, "max_deliver": 1}
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of a classic text exposition, by (name, labels)."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def scrape(url: str, **headers: str) -> httpx.Response:
    return httpx.get(url, headers=headers, timeout=5)


async def until(cond: Callable[[], Any], timeout: float, what: str) -> Any:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not (got := await cond() if inspect.iscoroutinefunction(cond) else cond()):
        assert loop.time() < end, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)
    return got


@pytest.fixture(autouse=True)
def _no_enable_metrics(monkeypatch: pytest.MonkeyPatch) -> None:
    """The defaults, whatever the shell running the tests has set."""
    monkeypatch.delenv("ENABLE_METRICS", raising=False)
    monkeypatch.delenv("OSIRIS_METRICS_LISTEN", raising=False)


# --- an actor-only process ----------------------------------------------------------------
async def test_actor_only_process_serves_its_series_restart_and_dead_letter_move_them(
    tmp_path: Path, fresh_nats_url: str,
) -> None:
    port = free_port()
    cfg = write_config(tmp_path / "osiris.toml", fresh_nats_url, ["metered", "slow"],
                       {"metered": FAST})
    proc = OsirisProcess(cfg, only=["metered"],
                         env={"OSIRIS_METRICS_LISTEN": f"127.0.0.1:{port}", "ENABLE_METRICS": ""})
    url = f"http://127.0.0.1:{port}/metrics"
    await asyncio.to_thread(proc.start)
    nc = await connect(fresh_nats_url)
    bus = Bus(nc)
    try:
        assert f"metrics: serving http://127.0.0.1:{port}/metrics" in proc.output()
        assert (await bus.request(CALL, {}))["ok"] is True
        with pytest.raises(BadRequest):
            await bus.request(CALL, {"refuse": True})
        r = await asyncio.to_thread(scrape, url)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
        got = parse(r.text)
        ep = {"actor": "metered", "endpoint": "call"}
        assert value(got, "osiris_actor_requests_total", **ep, code="200") == 1
        assert value(got, "osiris_actor_requests_total", **ep, code="400") == 1
        assert value(got, "osiris_actor_request_duration_seconds_count", **ep) == 2
        assert value(got, "osiris_actor_queue_wait_seconds_count", **ep) == 2
        assert value(got, "osiris_actor_queue_wait_seconds_bucket", **ep, le="+Inf") == 2
        assert value(got, "osiris_actor_state", actor="metered", state="running") == 1
        assert value(got, "osiris_actor_state", actor="metered", state="paused") == 0
        assert value(got, "osiris_actor_requests_in_flight", actor="metered") == 0
        assert value(got, "osiris_actor_requests_waiting", actor="metered") == 0
        assert value(got, "osiris_actor_restarts_total", actor="metered", reason="crash") == 0
        assert value(got, "osiris_actor_dead_letters_total", actor="metered", subject=EVENTS) == 0
        assert value(got, "osiris_actor_events_total", actor="metered", subject=EVENTS,
                     outcome="error") == 0
        assert not any(labels and dict(labels).get("actor") == "slow" for _, labels in got)

        # a crash: the request fails, the actor restarts, the counter moves
        with pytest.raises(ServiceError) as err:
            await bus.request(CALL, {"fatal": True})
        assert err.value.code == 500
        assert (await bus.request(CALL, {}))["ok"] is True  # waits for the new instance
        got = parse((await asyncio.to_thread(scrape, url)).text)
        assert value(got, "osiris_actor_restarts_total", actor="metered", reason="crash") == 1
        assert value(got, "osiris_actor_requests_total", **ep, code="500") == 1

        # a poison durable event: dead-lettered (max_deliver = 1), the counter moves
        await bus.publish(EVENTS, {"n": 1}, msg_id="good-1")
        await bus.publish(EVENTS, {"n": 2, "poison": True}, msg_id="poison-2")

        async def dead_lettered() -> Samples | None:
            s = parse((await asyncio.to_thread(scrape, url)).text)
            n = value(s, "osiris_actor_dead_letters_total", actor="metered", subject=EVENTS)
            return s if n == 1 else None

        got = await until(dead_lettered, 30, "the dead letter in the metrics")
        ev = {"actor": "metered", "subject": EVENTS}
        assert value(got, "osiris_actor_events_total", **ev, outcome="ok") == 1
        assert value(got, "osiris_actor_events_total", **ev, outcome="error") == 1
        assert value(got, "osiris_actor_event_duration_seconds_count", **ev) == 2
        assert value(got, "osiris_consumer_pending_messages", actor="metered",
                     consumer="metered_take") == 0

        # OpenMetrics when the scraper asks for it; anything but /metrics is a 404
        om = await asyncio.to_thread(
            scrape, url, accept="application/openmetrics-text; version=1.0.0; charset=utf-8")
        assert om.headers["content-type"].startswith("application/openmetrics-text")
        assert om.text.endswith("# EOF\n")
        fams = {f.name: f for f in openmetrics_families(om.text)}
        assert fams["osiris_actor_restarts"].type == "counter"
        assert fams["osiris_actor_request_duration_seconds"].type == "histogram"
        assert (await asyncio.to_thread(scrape, url.replace("/metrics", "/"))).status_code == 404
    finally:
        await nc.close()
        proc.signal(15)
        assert await asyncio.to_thread(proc.wait, 30) == 0, proc.output()


# --- in-process runtimes --------------------------------------------------------------------
async def test_a_traced_request_leaves_its_trace_id_as_an_exemplar(
    osiris_config: Callable[..., Config], osiris_runtime: Any, bus: Bus,
) -> None:
    async with osiris_runtime(osiris_config(["metered"], {"metered": FAST})) as rt:
        await bus.request(CALL, {"trace_id": TRACE})
        body, content_type = rt.metrics.render("application/openmetrics-text")
        assert content_type.startswith("application/openmetrics-text")
        lines = [ln for ln in body.decode().splitlines()
                 if ln.startswith("osiris_actor_request_duration_seconds_bucket")]
        assert any(f'# {{trace_id="{TRACE}"}}' in ln for ln in lines), lines
        # the classic format has no exemplars, and a request without a trace leaves none
        classic, _ = rt.metrics.render(None)
        assert TRACE not in classic.decode()


async def test_with_tracing_on_the_exemplar_is_the_callers_trace(
    tmp_path: Path, fresh_nats_url: str,
) -> None:
    """The whole path: OTLP export on, a caller's `traceparent` on the request; the request's
    span continues that trace, and its latency observation keeps the trace id."""
    from osiris_core.testing.otlp import OtlpReceiver

    port = free_port()
    cfg = write_config(tmp_path / "osiris.toml", fresh_nats_url, ["metered"], {"metered": FAST})
    with OtlpReceiver() as rx:
        proc = OsirisProcess(cfg, only=["metered"], env={
            "OSIRIS_METRICS_LISTEN": f"127.0.0.1:{port}", "OTEL_EXPORTER_OTLP_ENDPOINT": rx.url})
        await asyncio.to_thread(proc.start)
        nc = await connect(fresh_nats_url)
        try:
            await Bus(nc).request(CALL, {}, headers={
                "traceparent": f"00-{TRACE}-00f067aa0ba902b7-01"})
            om = (await asyncio.to_thread(scrape, f"http://127.0.0.1:{port}/metrics",
                                          accept="application/openmetrics-text")).text
        finally:
            await nc.close()
            proc.signal(15)
            assert await asyncio.to_thread(proc.wait, 30) == 0, proc.output()
    exemplars = [ln for ln in om.splitlines() if "# {" in ln]
    assert exemplars and all(f'{{trace_id="{TRACE}"}}' in ln for ln in exemplars), exemplars
    assert exemplars[0].startswith("osiris_actor_request_duration_seconds_bucket{")


async def test_pause_resume_operator_restart_and_tokens_are_counted(
    osiris_config: Callable[..., Config], osiris_runtime: Any, bus: Bus,
) -> None:
    async with osiris_runtime(osiris_config(["metered"], {"metered": FAST})) as rt:
        reg = rt.metrics.registry
        actor = {"actor": "metered"}
        for op in ("pause", "resume", "restart"):
            await bus.request("osiris.metered.control", {"op": op}, reply_type=ControlReply)
        assert reg.get_sample_value("osiris_actor_pauses_total", actor) == 1
        assert reg.get_sample_value("osiris_actor_resumes_total", actor) == 1
        assert reg.get_sample_value("osiris_actor_restarts_total",
                                    {**actor, "reason": "operator"}) == 1
        assert reg.get_sample_value("osiris_actor_restarts_total",
                                    {**actor, "reason": "crash"}) == 0
        assert reg.get_sample_value("osiris_actor_tokens_total", {**actor, "kind": "prompt"}) is None
        await bus.request(CALL, {"prompt_tokens": 7, "completion_tokens": 5})
        await bus.request(CALL, {"prompt_tokens": 3, "completion_tokens": 2})
        assert reg.get_sample_value("osiris_actor_tokens_total", {**actor, "kind": "prompt"}) == 10
        assert reg.get_sample_value("osiris_actor_tokens_total",
                                    {**actor, "kind": "completion"}) == 7


async def test_a_stuck_consumer_shows_its_lag(
    osiris_config: Callable[..., Config], osiris_runtime: Any, bus: Bus,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A handler stuck on one event fetches nothing more, yet the events that pile up behind
    it show as the consumer's lag (asked of the server, not read off the last fetch)."""
    from osiris_core.runtime import events

    monkeypatch.setattr(events, "LAG_POLL_S", 0.2)
    async with osiris_runtime(osiris_config(["metered"], {"metered": FAST})) as rt:
        reg = rt.metrics.registry
        lag = {"actor": "metered", "consumer": "metered_take"}
        taken = {"actor": "metered", "subject": EVENTS, "outcome": "ok"}
        run = uuid.uuid4().hex[:8]
        await bus.publish(EVENTS, {"n": 0, "stall_s": 4.0}, msg_id=f"stall-{run}")
        cell = rt.cell("metered")
        await until(lambda: cell.active == 1, 10, "the handler to take the stalling event")
        for n in range(1, 21):
            await bus.publish(EVENTS, {"n": n}, msg_id=f"behind-{n}-{run}")
        await until(lambda: reg.get_sample_value("osiris_consumer_pending_messages", lag) == 20,
                    3, "the lag of the 20 events behind the stuck one")
        assert reg.get_sample_value("osiris_actor_events_total", taken) == 0
        await until(lambda: reg.get_sample_value("osiris_actor_events_total", taken) == 21,
                    20, "the events once the handler is free")
        await until(lambda: reg.get_sample_value("osiris_consumer_pending_messages", lag) == 0,
                    5, "no lag left")


async def test_gateway_metrics_carry_the_actors_of_its_process(
    osiris_config: Callable[..., Config], osiris_runtime: Any, bus: Bus,
) -> None:
    port = free_port()
    cfg = osiris_config(["gateway", "metered"], {"gateway": {"port": port}, "metered": FAST})
    async with osiris_runtime(cfg) as rt:
        assert rt.metrics_listen == ""  # the gateway serves them: no listener of its own
        await bus.request(CALL, {})
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
            r = await c.get("/metrics")
            assert r.status_code == 200
            got = parse(r.text)
            assert value(got, "osiris_actor_requests_total", actor="metered", endpoint="call",
                         code="200") == 1
            assert value(got, "osiris_actor_state", actor="gateway", state="running") == 1
            assert any(name.startswith("osiris_gateway_") for name, _ in got)
            om = await c.get("/metrics", headers={"Accept": "application/openmetrics-text"})
            assert om.headers["content-type"].startswith("application/openmetrics-text")
            assert om.text.count("# EOF") == 1  # one exposition of both registries
            names = {f.name for f in openmetrics_families(om.text)}
            assert {"osiris_gateway_requests", "osiris_actor_requests"} <= names


async def test_enable_metrics_false_turns_off_the_gateway_route_and_the_listener(
    osiris_config: Callable[..., Config], osiris_runtime: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ENABLE_METRICS", "false")
    port, listen = free_port(), free_port()
    cfg = osiris_config(["gateway", "metered"], {"gateway": {"port": port}, "metered": FAST},
                        metrics_listen=f"127.0.0.1:{listen}")
    async with osiris_runtime(cfg) as rt:
        assert rt.metrics_listen == ""
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
            assert (await c.get("/metrics")).status_code == 404
            assert (await c.get("/health")).status_code == 200
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", listen), 1):
            pass


def test_where_a_process_serves_its_metrics(
    osiris_config: Callable[..., Config], monkeypatch: pytest.MonkeyPatch,
) -> None:
    alone = osiris_config(["metered"])
    with_gateway = osiris_config(["gateway", "metered"], name="gw.toml")
    assert Runtime(alone).metrics_listen == ""  # off by default
    monkeypatch.setenv("ENABLE_METRICS", "1")
    assert Runtime(alone).metrics_listen == DEFAULT_LISTEN
    assert Runtime(with_gateway).metrics_listen == ""  # its /metrics carries them
    monkeypatch.setenv("OSIRIS_METRICS_LISTEN", "127.0.0.1:9999")
    from osiris_core.config import load_config

    assert alone.path is not None
    assert Runtime(load_config(alone.path)).metrics_listen == "127.0.0.1:9999"
    monkeypatch.setenv("ENABLE_METRICS", "off")
    assert Runtime(load_config(alone.path)).metrics_listen == ""
    monkeypatch.setenv("ENABLE_METRICS", "")
    monkeypatch.setenv("OSIRIS_METRICS_LISTEN", "9999")
    with pytest.raises(ConfigError, match="metrics_listen.*host:port"):
        Runtime(load_config(alone.path))
    assert parse_listen(":9464") == ("0.0.0.0", 9464)
    assert parse_listen("[::1]:9464") == ("::1", 9464)


async def test_a_taken_port_is_logged_and_the_node_runs_on(
    osiris_config: Callable[..., Config], osiris_runtime: Any, bus: Bus,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cfg = osiris_config(["metered"], {"metered": FAST}, metrics_listen=f"127.0.0.1:{port}")
        with caplog.at_level(logging.ERROR, logger="osiris.runtime"):
            async with osiris_runtime(cfg):
                assert (await bus.request(CALL, {}))["ok"] is True
        errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert any(f"127.0.0.1:{port}" in m and "metrics_listen" in m
                   and "OSIRIS_METRICS_LISTEN" in m for m in errors), errors


MODEL_ACTORS = {  # actor → (its tiny model, config keys, a subject whose reply has usage)
    "hermes": ("hermes", {"device": "cpu"}, "osiris.hermes.generate"),
    "phi3": ("phi3-onnx", {"provider": "cpu"}, "osiris.phi3.complete"),
}


@pytest.mark.slow  # ~10 s each: torch / onnxruntime-genai load
@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning",
                            "ignore::UserWarning")
@pytest.mark.parametrize("actor", sorted(MODEL_ACTORS))
async def test_a_model_actor_counts_its_tokens(
    actor: str, tiny_models: Path, osiris_config: Callable[..., Config], osiris_runtime: Any,
    bus: Bus,
) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    model, extra, subject = MODEL_ACTORS[actor]
    cfg = osiris_config([actor], {actor: {"model": str(tiny_models / model), **extra}})
    async with osiris_runtime(cfg) as rt:
        reply = await bus.request(subject, {"prompt": "Assess AAPL LONG, stop 3%.",
                                            "max_length": 8}, timeout=60)
        reg = rt.metrics.registry
        for kind in ("prompt", "completion"):
            got = reg.get_sample_value("osiris_actor_tokens_total", {"actor": actor, "kind": kind})
            assert got == reply["usage"][f"{kind}_tokens"] and got > 0, (kind, got)
