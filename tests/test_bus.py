"""Bus client behaviour that callers rely on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import nats
import pytest

from osiris_contracts.messages import GenerateChunk
from osiris_core import BadRequest, Config, RequestTimeout, Unavailable
from osiris_core.nats.bus import Bus


@pytest.mark.parametrize("mode", ["request", "stream"])
async def test_fresh_responder_is_found_even_right_after_another_unsubscribed(
    nats_url: str, bus: Bus, mode: str
) -> None:
    """nats-server sometimes answers "no responders" to the first request after a
    responder on another connection replaced an old one (about 5% of tries here); the bus
    retries briefly instead of reporting the subject unserved, for plain and streaming
    requests alike (a CI run once saw `bus.stream` call a just-restarted actor unserved)."""
    for i in range(100):
        nc = await nats.connect(nats_url)

        async def answer(msg: nats.aio.msg.Msg) -> None:
            await msg.respond(b'{"text": "", "index": 0, "done": true}')

        sub = await nc.subscribe("test.bus.fresh", queue="q", cb=answer)
        await nc.flush()
        if mode == "request":
            assert (await bus.request("test.bus.fresh", {"i": i}))["done"] is True
        else:
            chunks = [c async for c in bus.stream("test.bus.fresh", {"i": i},
                                                  item_type=GenerateChunk)]
            assert [c.done for c in chunks] == [True]
        await sub.drain()
        await nc.close()


async def test_unserved_subject_is_reported_quickly(bus: Bus) -> None:
    with pytest.raises(Unavailable, match="no actor is serving test.bus.nobody"):
        await bus.request("test.bus.nobody", {}, timeout=5)


async def test_stream_yields_chunks_in_order_until_done(
    osiris_config: Callable[..., Config], osiris_runtime: Any, bus: Bus
) -> None:
    async with osiris_runtime(osiris_config(plugins=["slow"])):
        chunks = [c async for c in bus.stream("test.slow.count", {"n": 5},
                                              item_type=GenerateChunk)]
    assert [c.index for c in chunks] == [0, 1, 2, 3, 4, 5]
    assert chunks[-1].done and chunks[-1].generated_text == "01234"
    assert not any(c.done for c in chunks[:-1])


async def test_stream_errors_are_raised(
    osiris_config: Callable[..., Config], osiris_runtime: Any, bus: Bus
) -> None:
    with pytest.raises(Unavailable, match="no actor is serving test.slow.count"):
        async for _ in bus.stream("test.slow.count", {"n": 1}, item_type=GenerateChunk):
            pass
    async with osiris_runtime(osiris_config(plugins=["slow"])):
        with pytest.raises(BadRequest, match="field 'n'"):
            async for _ in bus.stream("test.slow.count", {"n": "x"}, item_type=GenerateChunk):
                pass


async def test_embedded_server_takes_messages_beyond_the_default_1_mib(bus: Bus) -> None:
    from osiris_core.nats.server import MAX_PAYLOAD

    assert bus.nc.max_payload == MAX_PAYLOAD
    payload = b"x" * (3 * 1024 * 1024)  # a ~70 s WAV would not fit in nats-server's default
    async def answer(msg: nats.aio.msg.Msg) -> None:
        await msg.respond(msg.data[:5])

    sub = await bus.nc.subscribe("test.bus.big", cb=answer)
    await bus.nc.flush()
    assert await bus.request("test.bus.big", payload, reply_type=bytes) == b"xxxxx"
    await sub.unsubscribe()


async def test_durable_publish_without_a_stream_is_unavailable_and_a_lost_ack_times_out(
    nats_url: str
) -> None:
    nc = await nats.connect(nats_url)
    bus = Bus(nc, ack_timeout=0.3)
    try:
        with pytest.raises(Unavailable, match="no JetStream stream captures test.bus.nostream"):
            await bus.publish("test.bus.nostream", {"a": 1}, msg_id="m1", durable=True)
        # someone listens, but no stream stores it: nothing acknowledges, so no "durable" reply
        sub = await nc.subscribe("test.bus.listened")
        with pytest.raises(RequestTimeout, match="no JetStream ack within 0.3s"):
            await bus.publish("test.bus.listened", {"a": 1}, msg_id="m2", durable=True)
        await sub.unsubscribe()
        assert not bus._acks.waiting  # nothing left behind
        with pytest.raises(ValueError, match="needs a msg_id"):
            await bus.publish("test.bus.nostream", {"a": 1}, durable=True)
    finally:
        await nc.close()
