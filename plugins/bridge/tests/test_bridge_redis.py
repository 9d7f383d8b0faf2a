"""The Redis bridge against a real redis-server and a real nats-server."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
import redis.asyncio as aioredis
from osiris_sim.csvdata import make_data

from osiris_contracts.messages import (
    Advice,
    AudioChunk,
    FeedbackItem,
    MarketTick,
    ProposalAssessed,
    ProposalCreated,
    RunRecord,
    TradeProposal,
)
from osiris_contracts.subjects import (
    ADVICE_GENERATED,
    AUDIO_BYTES,
    FEEDBACK_SUBMITTED,
    PROPOSAL_ASSESSED,
    PROPOSAL_CREATED,
)
from osiris_core import Config, ConfigError
from osiris_core.nats.bus import Bus

CHANNELS = ["market.ticks", "phi3.proposal.created", "phi3.proposal.assessed",
            "phi3.feedback.submitted", "advice.generated", "audio.bytes"]
P = TradeProposal(ticker="XYZ", action="adjust", side="LONG", new_stop_pct=5.0,
                  new_target_pct=10.0, confidence=0.85, rationale="trend")
TICK = MarketTick(timestamp="2024-01-01T00:00:00+00:00", open=1, high=2, low=0.5, close=1.5,
                  volume=3)


class RedisSub:
    """A plain Redis client subscribed to channels, collecting what arrives."""

    def __init__(self, url: str) -> None:
        self.client = aioredis.from_url(url)
        self.pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        self.got: list[tuple[str, bytes]] = []

    async def subscribe(self, *channels: str) -> RedisSub:
        await self.pubsub.subscribe(*channels)
        return self

    async def wait_for(self, cond: Callable[[list[tuple[str, bytes]]], bool],
                       timeout: float = 15.0) -> list[tuple[str, bytes]]:
        deadline = time.monotonic() + timeout
        while not cond(self.got):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; redis got {[c for c, _ in self.got]}")
            msg = await self.pubsub.get_message(timeout=0.2)  # None also on confirmations
            if msg and msg["type"] == "message":
                self.got.append((msg["channel"].decode(), msg["data"]))
        return self.got

    async def close(self) -> None:
        await self.pubsub.aclose()
        await self.client.aclose()


async def facts_until(rt: Any, cond: Callable[[dict[str, Any]], bool],
                      timeout: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        facts = rt.cell("bridge").status().facts
        if cond(facts):
            return facts
        if time.monotonic() > deadline:
            raise AssertionError(f"bridge facts never matched: {facts}")
        await asyncio.sleep(0.05)


async def test_idle_without_redis_url(osiris_config: Callable[..., Config],
                                      osiris_runtime: Any) -> None:
    async with osiris_runtime(osiris_config(plugins=["bridge"])) as rt:
        facts = rt.cell("bridge").status().facts
        assert rt.cell("bridge").state.value == "running"
        assert facts["state"] == "idle" and "redis_url is empty" in facts["reason"]


def test_audio_cannot_be_bridged_from_redis(osiris_config: Callable[..., Config],
                                            osiris_runtime: Any) -> None:
    from osiris_core.runtime.node import Runtime

    cfg = osiris_config(plugins=["bridge"],
                        tables={"bridge": {"channels": {"audio.bytes": "both"}}})
    with pytest.raises(ConfigError, match=r"plugins.bridge.*audio.bytes: can only be bridged"):
        Runtime(cfg)


async def test_documented_channels_reach_redis_in_the_seeds_shapes(
        redis_server: Any, osiris_config: Callable[..., Config], osiris_runtime: Any,
        fresh_nats_url: str) -> None:
    cfg = osiris_config(plugins=["bridge"], nats=fresh_nats_url,
                        tables={"bridge": {"redis_url": redis_server.url}})
    async with osiris_runtime(cfg) as rt:
        await facts_until(rt, lambda f: f["state"] == "connected")
        sub = await RedisSub(redis_server.url).subscribe(*CHANNELS)
        bus = rt.bus
        wav = b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(24)
        await bus.publish("market.ticks", TICK)
        await bus.publish(PROPOSAL_CREATED, ProposalCreated(
            transaction_id="t1", timestamp="2024-01-01T00:00:00Z", prompt="p",
            phi3_proposal=P), msg_id="t1")
        await bus.publish(PROPOSAL_ASSESSED, ProposalAssessed(
            transaction_id="t1", timestamp="2024-01-01T00:00:01Z", phi3_proposal=P,
            hermes_assessment="fine"), msg_id="t1:assessed")
        await bus.publish(FEEDBACK_SUBMITTED, FeedbackItem(
            transaction_id="t1", feedback_type="correction",
            feedback_content={"comment": "Stop too tight."}, corrected_proposal=P,
            feedback_id="f1"), msg_id="f1")
        await bus.publish(ADVICE_GENERATED, Advice(
            transaction_id="t1", timestamp="2024-01-01T00:00:02Z", approved=True,
            reasons=["within limits"], phi3_proposal=P), msg_id="t1:advice")
        await bus.publish(AUDIO_BYTES, AudioChunk(
            utterance_id="u1", seq=0, wav_b64=base64.b64encode(wav).decode(),
            sample_rate=22050, final=True))
        got = dict(await sub.wait_for(lambda g: len(g) >= 6))
        await sub.close()

    def shape(channel: str, tp: type[Any]) -> Any:
        obj = json.loads(got[channel])
        assert obj.pop("_osiris_bridge") == "nats"  # the loop marker, nothing else added
        return msgspec.convert(obj, tp)

    assert shape("market.ticks", MarketTick) == TICK
    created = shape("phi3.proposal.created", ProposalCreated)
    assert created.phi3_proposal == P and created.transaction_id == "t1"
    assessed = shape("phi3.proposal.assessed", ProposalAssessed)
    assert assessed.hermes_assessment == "fine"
    fb = shape("phi3.feedback.submitted", FeedbackItem)
    assert fb.feedback_type == "correction" and fb.feedback_content == {"comment": "Stop too tight."}
    assert shape("advice.generated", Advice).approved is True
    assert base64.b64decode(got["audio.bytes"]) == wav  # the seeds' bare base64 WAV


async def test_redis_to_nats_without_echo_and_reconnect_with_backoff(
        redis_server: Any, osiris_config: Callable[..., Config], osiris_runtime: Any,
        fresh_nats_url: str) -> None:
    cfg = osiris_config(plugins=["bridge"], nats=fresh_nats_url,
                        tables={"bridge": {"redis_url": redis_server.url,
                                           "reconnect_initial_s": 0.05,
                                           "reconnect_max_s": 0.5}})
    async with osiris_runtime(cfg) as rt:
        bus: Bus = rt.bus
        await facts_until(rt, lambda f: f["state"] == "connected")
        on_nats: list[Any] = []
        arrived = asyncio.Event()

        async def cb(msg: Any) -> None:
            on_nats.append(msg)
            arrived.set()

        nsub = await bus.nc.subscribe("market.ticks", cb=cb)
        await bus.nc.flush()
        rsub = await RedisSub(redis_server.url).subscribe("market.ticks")
        outside = aioredis.from_url(redis_server.url)
        await outside.publish("market.ticks", msgspec.json.encode(TICK))
        await asyncio.wait_for(arrived.wait(), 10)
        assert msgspec.json.decode(on_nats[0].data, type=MarketTick) == TICK
        assert on_nats[0].headers == {"Osiris-Bridged": "redis"}
        # sentinel from NATS: by the time it reaches Redis, an echo of the tick would have too
        sentinel = msgspec.structs.replace(TICK, symbol="SENTINEL")
        await bus.publish("market.ticks", sentinel)
        got = await rsub.wait_for(lambda g: any(b"SENTINEL" in d for _, d in g))
        assert [json.loads(d)["symbol"] for _, d in got] == ["SIM", "SENTINEL"]
        assert "_osiris_bridge" not in json.loads(got[0][1])  # the outside original
        assert len(on_nats) == 2  # the tick once, the sentinel once: no loop back to NATS
        facts = await facts_until(rt, lambda f: f["echoes_dropped"] >= 2)
        assert facts["from_redis"] == 1 and facts["to_redis"] == 1

        # Redis goes away: the bridge says so and retries with backoff …
        await rsub.close()
        await outside.aclose()
        redis_server.stop()
        facts = await facts_until(rt, lambda f: f["state"] == "reconnecting"
                                  and f["reconnects"] >= 2)
        assert facts["last_error"]
        await bus.publish("market.ticks", TICK)  # at-most-once: counted, dropped
        await facts_until(rt, lambda f: f["dropped_while_disconnected"] >= 1)
        # … and comes back on its own when Redis does
        redis_server.start()
        facts = await facts_until(rt, lambda f: f["state"] == "connected")
        rsub = await RedisSub(redis_server.url).subscribe("market.ticks")
        await bus.publish("market.ticks", sentinel)
        await rsub.wait_for(lambda g: len(g) >= 1)
        await rsub.close()
        await nsub.unsubscribe()
        assert rt.cell("bridge").state.value == "running"


async def test_outside_simulator_on_redis_drives_the_orchestrator(
        redis_server: Any, tiny_models: Path, osiris_config: Callable[..., Config],
        osiris_runtime: Any, fresh_nats_url: str, tmp_path: Path) -> None:
    cfg = osiris_config(
        plugins=["bridge", "orchestrator", "hermes", "phi3", "feedback"], nats=fresh_nats_url,
        tables={"bridge": {"redis_url": redis_server.url},
                "hermes": {"model": str(tiny_models / "hermes"), "device": "cpu"},
                "phi3": {"model": str(tiny_models / "phi3-onnx"), "provider": "cpu"},
                "orchestrator": {"ticks_per_proposal": 5, "assess_max_length": 16}})
    csv = make_data(tmp_path / "m.csv", bars=5, seed=9)
    async with osiris_runtime(cfg) as rt:
        await facts_until(rt, lambda f: f["state"] == "connected")
        done = asyncio.Event()
        runs: list[RunRecord] = []

        async def cb(msg: Any) -> None:
            runs.append(msgspec.json.decode(msg.data, type=RunRecord))
            done.set()

        sub = await rt.bus.nc.subscribe("osiris.runs.completed", cb=cb)
        rsub = await RedisSub(redis_server.url).subscribe("advice.generated")
        # the seeds' simulator: ticks onto Redis market.ticks, nothing else
        out = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-c", "from osiris_core.cli import main; main()",
                             "sim", str(csv), "--redis_url", redis_server.url, "--speed", "max"],
            capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        await asyncio.wait_for(done.wait(), 120)
        await sub.unsubscribe()
        facts = rt.cell("orchestrator").status().facts
        assert facts["ticks_received"] == 5
        assert runs[0].steps[0].name == "query_market"
        assert runs[0].status in ("ok", "rejected"), runs[0].error
        # and the risk gate's advice went back out to Redis
        got = await rsub.wait_for(lambda g: len(g) >= 1)
        assert json.loads(got[0][1])["transaction_id"] == runs[0].transaction_id
        await rsub.close()


async def test_seed_command_lines_sim_and_orchestrator_over_redis(
        redis_server: Any, tiny_models: Path, osiris_config: Callable[..., Config],
        osiris_runtime: Any, fresh_nats_url: str, tmp_path: Path) -> None:
    """The seeds' docker-compose commands, as osiris verbs: the simulator onto Redis with
    --redis_url --speed 10x --from_date, the orchestrator reading Redis with --redis_url
    --market_channel --ticks_per_proposal (models on NATS)."""
    cfg = osiris_config(
        plugins=["hermes", "phi3"], nats=fresh_nats_url,
        tables={"hermes": {"model": str(tiny_models / "hermes"), "device": "cpu"},
                "phi3": {"model": str(tiny_models / "phi3-onnx"), "provider": "cpu"},
                "orchestrator": {"assess_max_length": 16}})
    # one-second bars from 2023-09-30 23:59:50: --from_date 2023-10-01 keeps the last 20;
    # at 10x they arrive 0.1 s apart
    csv = make_data(tmp_path / "spy_1h.csv", bars=30, seed=4, interval_s=1,
                    start="2023-09-30T23:59:50+00:00")
    cli = [sys.executable, "-c", "from osiris_core.cli import main; main()"]
    async with osiris_runtime(cfg):
        orch = await asyncio.create_subprocess_exec(
            *cli, "orchestrate", "--redis_url", redis_server.url, "--market_channel",
            "market.ticks", "--ticks_per_proposal", "5", "--count", "1", "--json",
            "-c", str(cfg.path), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        assert orch.stderr is not None
        line = await asyncio.wait_for(orch.stderr.readline(), 60)  # subscribed: say so first
        while b"waiting for 5 ticks per run on redis" not in line:
            line = await asyncio.wait_for(orch.stderr.readline(), 60)
        sim = await asyncio.to_thread(
            subprocess.run, [*cli, "sim", str(csv), "--redis_url", redis_server.url,
                             "--speed", "10x", "--from_date", "2023-10-01"],
            capture_output=True, text=True, timeout=60)
        assert sim.returncode == 0, sim.stderr
        assert "10 bars before 2023-10-01 skipped" in sim.stderr
        assert "20 ticks published" in sim.stderr
        out, err = await asyncio.wait_for(orch.communicate(), 120)
        assert orch.returncode == 0, err.decode()
        res = json.loads(out.decode().splitlines()[-1])
        assert res["market"]["ticks"] == 5 and res["market"]["from"].startswith("2023-10-01")
        assert res["run"]["status"] in ("ok", "rejected")
