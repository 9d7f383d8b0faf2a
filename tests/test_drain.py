"""Draining an endpoint leaves the server's interest but still answers a late message."""

from __future__ import annotations

import asyncio

import nats
import pytest
from nats.aio.msg import Msg

from osiris_core.nats.micro import drain_sub


@pytest.mark.parametrize("linger", [0.5, 0.0])
async def test_a_message_handed_over_after_the_unsub_is_confirmed_is_still_answered(
    nats_url: str, linger: float
) -> None:
    """nats-server can deliver a message it matched just before an UNSUB *after* the PONG
    confirming it (seen under CPU load; the crash-loop test timed out on it in CI). The
    server-side race cannot be forced here, so the late delivery is replayed into the
    client's read path at that moment: with a linger it reaches the callback; without one
    (nats-py's own drain) it is dropped — the case the linger exists for."""
    nc = await nats.connect(nats_url)
    got: list[bytes] = []

    async def cb(msg: Msg) -> None:
        got.append(msg.data)

    try:
        sub = await nc.subscribe("test.drain.late", queue="q", cb=cb)
        await nc.flush()
        drain = asyncio.ensure_future(drain_sub(sub, linger=linger))
        await asyncio.sleep(0.1)  # UNSUB sent and confirmed (PING/PONG) by now
        other = await nats.connect(nats_url)
        try:  # the server no longer routes to it: nobody serves the subject
            with pytest.raises(nats.errors.NoRespondersError):
                await other.request("test.drain.late", b"", timeout=2)
        finally:
            await other.close()
        await nc._process_msg(sub._id, b"test.drain.late", b"", b"late", b"")
        await asyncio.wait_for(drain, 5)
        assert got == ([b"late"] if linger else [])
        assert sub._id not in nc._subs  # forgotten once the linger ended
    finally:
        await nc.close()
