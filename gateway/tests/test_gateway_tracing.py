"""One trace from the HTTP request through every actor it touches, across processes (DESIGN
§15): two `osiris run` processes on tiny models export spans over OTLP/HTTP to a real
receiver that decodes the protobuf, as a collector would."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from osiris_contracts.subjects import (
    HERMES_GENERATE,
    PHI3_GENERATE,
    PROPOSAL_ASSESSED,
    PROPOSAL_CREATED,
    PROPOSALS_PROPOSE,
    STORE_QUERY,
)
from osiris_core.nats.bus import connect
from osiris_core.testing import OsirisProcess, write_config
from osiris_core.testing.otlp import OtlpReceiver, ReceivedSpan

from .conftest import free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as rx:
        yield rx


@pytest.fixture(scope="module")
def two_processes(nats_url: str, tiny_models: Path, receiver: OtlpReceiver,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    """Process A: the gateway and the orchestrator; process B: phi3, hermes and feedback."""
    d = tmp_path_factory.mktemp("tracing")
    port = free_port()
    plugins = ["gateway", "orchestrator", "phi3", "hermes", "feedback"]
    cfg = write_config(d / "osiris.toml", nats_url, plugins, {
        "gateway": {"port": port},
        "hermes": {"model": str(tiny_models / "hermes"), "max_new_tokens_cap": 200},
        "phi3": {"model": str(tiny_models / "phi3-onnx")},
    })
    env = {"HF_HUB_OFFLINE": "1", "OSIRIS_LOG_LEVEL": "WARNING",
           "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_BSP_SCHEDULE_DELAY": "100"}
    models_env = {**env, "OSIRIS_LOG_FORMAT": "json"}  # its log lines name their trace
    with OsirisProcess(cfg, only=["phi3", "hermes", "feedback"], env=models_env) as models, \
            OsirisProcess(cfg, only=["gateway", "orchestrator"], env=env):
        yield System(f"http://127.0.0.1:{port}", models, nats_url)


@dataclass
class System:
    url: str
    models: OsirisProcess  # the process of phi3, hermes and feedback
    nats_url: str


def _by_id(spans: list[ReceivedSpan]) -> dict[str, ReceivedSpan]:
    return {s.span_id: s for s in spans}


def test_one_trace_spans_gateway_orchestrator_phi3_hermes_and_the_durable_consumer(
    two_processes: System, receiver: OtlpReceiver
) -> None:
    trace_id, caller = secrets.token_hex(16), secrets.token_hex(8)
    r = httpx.post(two_processes.url + "/propose_trade_adjustments/",
                   json={"prompt": "AAPL dropped 3% on earnings", "max_length": 256},
                   headers={"traceparent": f"00-{trace_id}-{caller}-01"}, timeout=120)
    assert r.status_code == 200, r.text

    created, assessed = PROPOSAL_CREATED.name, PROPOSAL_ASSESSED.name

    expected = {("POST /propose_trade_adjustments", "server"),
                (f"{PROPOSALS_PROPOSE.name} request", "client"),
                (f"{PROPOSALS_PROPOSE.name} process", "server"),
                *((f"{subject} {side}", kind) for subject in (PHI3_GENERATE.name,
                                                              HERMES_GENERATE.name)
                  for side, kind in (("request", "client"), ("process", "server"))),
                *((f"{subject} {side}", kind) for subject in (created, assessed)
                  for side, kind in (("publish", "producer"), ("process", "consumer")))}

    def complete(spans: list[ReceivedSpan]) -> bool:
        # both processes export in batches, each on its own clock: wait for every span
        return expected <= {(s.name, s.kind) for s in spans if s.trace_id == trace_id}

    receiver.wait_for(complete, timeout=30)
    spans = receiver.trace(trace_id)
    by_id = _by_id(spans)
    for s in sorted(spans, key=lambda s: s.start_ns):
        parent = by_id.get(s.parent)
        print(f"{s.service:28} {s.kind:8} {s.name:40} <- "
              f"{parent.name if parent else ('caller' if s.parent == caller else s.parent)}")

    # the gateway's span continues the caller's traceparent; every other parent is present
    root = [s for s in spans if s.parent == caller]
    assert [s.name for s in root] == ["POST /propose_trade_adjustments"], root
    assert root[0].kind == "server" and root[0].attributes["http.response.status_code"] == 200
    orphans = [s.name for s in spans if s.parent != caller and s.parent not in by_id]
    assert not orphans, f"spans whose parent is missing: {orphans}"

    def one(name: str, kind: str) -> ReceivedSpan:
        found = [s for s in spans if s.name == name and s.kind == kind]
        assert len(found) == 1, (name, kind, [(s.name, s.kind) for s in spans])
        return found[0]

    # gateway → orchestrator → phi3 and hermes: request (client) → process (server)
    propose = one(f"{PROPOSALS_PROPOSE.name} process", "server")
    assert by_id[propose.parent].name == f"{PROPOSALS_PROPOSE.name} request"
    assert by_id[by_id[propose.parent].parent] is root[0]
    for subject, actor in ((PHI3_GENERATE.name, "phi3"), (HERMES_GENERATE.name, "hermes")):
        served = one(f"{subject} process", "server")
        assert served.attributes["osiris.actor"] == actor
        sent = by_id[served.parent]
        assert sent.name == f"{subject} request" and sent.kind == "client"
        assert by_id[sent.parent] is propose  # sent by the orchestrator's handler
        assert served.attributes["osiris.queue_wait_s"] >= 0
        assert served.attributes["osiris.service_s"] > 0
    hermes = one(f"{HERMES_GENERATE.name} process", "server")
    assert hermes.attributes["gen_ai.usage.output_tokens"] > 0
    assert hermes.attributes["gen_ai.usage.input_tokens"] > 0

    # the durable events: published by the orchestrator, consumed by feedback in the other
    # process — a child of the publish span and linked to it
    for subject in (created, assessed):
        published = one(f"{subject} publish", "producer")
        assert by_id[published.parent] is propose
        consumed = [s for s in spans if s.name == f"{subject} process" and s.kind == "consumer"
                    and s.attributes["osiris.actor"] == "feedback"]
        assert len(consumed) == 1, consumed
        assert consumed[0].parent == published.span_id
        assert (trace_id, published.span_id) in consumed[0].links
        assert consumed[0].attributes["osiris.durable"] is True

    # two processes, told apart by their default service names
    services = {s.attributes.get("osiris.actor"): s.service for s in spans
                if s.kind in ("server", "consumer")}
    assert services["gateway"] == services["orchestrator"] == "osiris-gateway-orchestrator"
    assert services["phi3"] == services["hermes"] == services["feedback"] \
        == "osiris-phi3-hermes-feedback"


def test_a_request_without_traceparent_starts_a_trace_and_errors_are_marked(
    two_processes: System, receiver: OtlpReceiver
) -> None:
    # within the HTTP bounds, past hermes' own cap (200 here): the actor itself refuses it
    r = httpx.post(two_processes.url + "/generate/hermes",
                   json={"prompt": "x", "max_length": 256}, timeout=60)
    assert r.status_code in (400, 422), r.text

    def refused(s: ReceivedSpan) -> bool:
        return (s.name == f"{HERMES_GENERATE.name} process"
                and s.attributes.get("osiris.error.code") == r.status_code)

    def rooted(spans: list[ReceivedSpan]) -> bool:
        traces = {s.trace_id for s in spans if refused(s)}
        return any(s.trace_id in traces and not s.parent for s in spans)

    spans = receiver.wait_for(rooted, timeout=30)
    bad = next(s for s in spans if refused(s))
    assert bad.status_code != 2  # a caller's mistake is not the server's error (4xx: unset)
    trace = _by_id(receiver.trace(bad.trace_id))
    http = [s for s in trace.values() if s.kind == "server" and not s.parent]
    assert [s.name for s in http] == ["POST /generate/hermes"]  # a new trace, rooted here
    assert http[0].attributes["http.response.status_code"] == r.status_code
    # hermes' warning about the bad request, a JSON line naming the trace and its span
    lines = [json.loads(ln) for ln in two_processes.models.output().splitlines()
             if ln.startswith("{")]
    named = [ln for ln in lines if ln.get("trace_id") == bad.trace_id]
    assert named and named[0]["span_id"] == bad.span_id and named[0]["actor"] == "hermes", \
        lines[-5:]


def test_a_streamed_generation_is_one_request_span_and_its_process_span(
    two_processes: System, receiver: OtlpReceiver
) -> None:
    trace_id = secrets.token_hex(16)
    with httpx.stream("POST", two_processes.url + "/generate/hermes",
                      json={"prompt": "Stream me", "max_length": 24, "stream": True},
                      headers={"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"},
                      timeout=60) as r:
        assert r.status_code == 200
        body = "".join(r.iter_text())
    assert "event: done" in body, body[-300:]

    def served(spans: list[ReceivedSpan]) -> bool:
        return {s.kind for s in spans if s.trace_id == trace_id} >= {"server", "client"} \
            and len([s for s in spans if s.trace_id == trace_id and s.kind == "server"]) == 2

    receiver.wait_for(served, timeout=30)
    spans = _by_id(receiver.trace(trace_id))
    sent = [s for s in spans.values() if s.kind == "client"]
    assert len(sent) == 1 and sent[0].name.endswith(" request"), sent
    process = [s for s in spans.values() if s.parent == sent[0].span_id]
    assert len(process) == 1 and process[0].attributes["osiris.actor"] == "hermes"
    assert process[0].attributes["gen_ai.usage.output_tokens"] > 0
    # the stream's request span lasts until the last chunk: it holds the process span
    assert sent[0].start_ns <= process[0].start_ns and sent[0].end_ns >= process[0].end_ns


async def test_baggage_travels_with_the_trace_through_every_hop(two_processes: System) -> None:
    """The caller's `baggage` reaches every message the request causes: the orchestrator's
    request to phi3 (gateway → orchestrator → phi3), phi3's store query to feedback (one more
    actor, the other process) and the durable event the orchestrator publishes."""
    trace_id, baggage = secrets.token_hex(16), f"osiris.test={secrets.token_hex(4)},tenant=acme"
    watched = (PHI3_GENERATE.name, STORE_QUERY.name, PROPOSAL_CREATED.name)
    seen: dict[str, list[dict[str, str]]] = {s: [] for s in watched}
    nc = await connect(two_processes.nats_url)

    async def keep(msg: Any) -> None:
        if trace_id in (msg.headers or {}).get("traceparent", ""):
            seen[msg.subject].append(dict(msg.headers))

    try:
        for subject in watched:  # plain subscriptions: a copy of each message, no replies
            await nc.subscribe(subject, cb=keep)
        await nc.flush()
        async with httpx.AsyncClient(timeout=120) as http:
            r = await http.post(two_processes.url + "/propose_trade_adjustments/",
                                json={"prompt": "MSFT beat on cloud revenue", "max_length": 256},
                                headers={"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01",
                                         "baggage": baggage})
        assert r.status_code == 200, r.text
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while not all(seen.values()) and loop.time() < deadline:
            await asyncio.sleep(0.05)
    finally:
        await nc.close()
    for subject, headers in seen.items():
        assert headers, f"no message on {subject} in the trace"
        assert all(h.get("baggage") == baggage for h in headers), (subject, headers)
