"""SSE against a real server: `/stream/audio` relays `audio.bytes`, `/events` filters by
subject, and a client that disconnects frees its NATS subscription."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

from osiris_contracts.messages import AudioChunk, MarketTick
from osiris_core.nats.bus import Bus

from .conftest import client, wait_for


async def frames(resp: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    """Parse an SSE body into frames ({"event", "data", "id", "comment"})."""
    frame: dict[str, Any] = {}
    async for line in resp.aiter_lines():
        if line == "":
            if frame:
                yield frame
            frame = {}
            continue
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "":
            frame["comment"] = value
        else:
            frame[field] = frame[field] + "\n" + value if field in frame else value


async def subscriptions(c: httpx.AsyncClient) -> float:
    for line in (await c.get("/metrics")).text.splitlines():
        if line.startswith("osiris_gateway_sse_subscriptions "):
            return float(line.split()[1])
    raise AssertionError("no sse subscription gauge")


async def test_stream_audio_relays_audio_bytes(gateway, nats_url, bus: Bus) -> None:
    chunks = [AudioChunk(utterance_id="u1", seq=i, wav_b64="UklGRg==", sample_rate=22050,
                         final=i == 2, text=f"s{i}") for i in range(3)]
    async with gateway(nats_url) as url, client(url) as c, \
            c.stream("GET", "/stream/audio/") as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        it = frames(resp)
        assert (await it.__anext__())["comment"] == "subscribed"
        for ch in chunks:
            await bus.publish("audio.bytes", ch)
        got = [await asyncio.wait_for(it.__anext__(), 10) for _ in chunks]
        assert [json.loads(f["data"]) for f in got] == [
            {"utterance_id": "u1", "seq": i, "wav_b64": "UklGRg==", "sample_rate": 22050,
             "final": i == 2, "text": f"s{i}"} for i in range(3)]
        assert all("event" not in f for f in got)  # plain messages: EventSource.onmessage


async def test_events_filters_by_subject(gateway, nats_url, bus: Bus) -> None:
    tick = MarketTick(timestamp="2024-01-02T10:00:00", open=1, high=2, low=0.5, close=1.5,
                      volume=10)
    async with gateway(nats_url) as url, client(url) as c:
        r = await c.get("/events", params={"subjects": "osiris.secret.stuff"})
        assert r.status_code == 400 and r.json()["field"] == "subjects"
        r = await c.get("/events")
        assert r.status_code == 400
        async with c.stream("GET", "/events", params={"subjects": "market.ticks,osiris.gpu.>"}) as resp:
            it = frames(resp)
            assert (await it.__anext__())["comment"] == "subscribed"
            await bus.publish("audio.bytes", AudioChunk(utterance_id="x", seq=0, wav_b64="",
                                                        sample_rate=1))   # not asked for
            await bus.publish("osiris.gpu.secret", {"x": 1})  # matches the pattern, not allowed
            await bus.publish("market.ticks", tick)
            await bus.publish("osiris.gpu.events", {"kind": "paused", "actor": "hermes"})
            got = [await asyncio.wait_for(it.__anext__(), 10) for _ in range(2)]
        # two subscriptions: no order between them, but nothing else slipped through
        by_event = {f["event"]: f for f in got}
        assert set(by_event) == {"market.ticks", "osiris.gpu.events"}
        assert json.loads(by_event["market.ticks"]["data"])["close"] == 1.5
        assert json.loads(by_event["osiris.gpu.events"]["data"]) == {"kind": "paused",
                                                                     "actor": "hermes"}
        assert sorted(int(f["id"]) for f in got) == [1, 2]


async def test_disconnected_client_frees_its_subscription(gateway, nats_url, bus: Bus) -> None:
    async with gateway(nats_url) as url, client(url) as c:
        assert await subscriptions(c) == 0
        for path, params in (("/stream/audio", {}),
                             ("/events", {"subjects": "market.ticks,phi3.>"})):
            async with httpx.AsyncClient(base_url=url) as other:
                async with other.stream("GET", path, params=params) as resp:
                    it = frames(resp)
                    assert (await it.__anext__())["comment"] == "subscribed"
                    assert await subscriptions(c) >= 1
                # the connection closes here, mid-stream
            await wait_for(lambda: _zero(c), 10)


async def _zero(c: httpx.AsyncClient) -> bool:
    return await subscriptions(c) == 0


async def test_health_polls_share_one_scatter(gateway, nats_url, bus: Bus, osiris_config,
                                              osiris_runtime) -> None:
    """Many pollers, one `osiris.runtime.status` round per cache window."""
    scatters: list[str] = []

    async def spy(msg: Any) -> None:
        scatters.append(msg.reply)

    await bus.nc.subscribe("osiris.runtime.status", cb=spy)
    await bus.nc.flush()
    async with osiris_runtime(osiris_config(["example"])), \
            gateway(nats_url, health_cache_s=30.0) as url, client(url) as c:
        replies = await asyncio.gather(*(c.get("/health") for _ in range(20)))
        assert {r.status_code for r in replies} == {200}
        assert all(any(a["name"] == "example" for a in r.json()["actors"]) for r in replies)
        assert len(scatters) == 1
        again = (await c.get("/health/")).json()
        assert len(scatters) == 1 and again["age_s"] >= 0
