"""Tick intake: decode and validate, buffer `ticks_per_proposal`, hand full batches on.

Also reads ticks straight from a Redis channel (the seeds' setup without the bridge),
reconnecting with backoff.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator
from typing import Any

import msgspec

from osiris_contracts.messages import MarketTick
from osiris_core.config import validation_error_field

__all__ = ["TickBuffer", "redis_messages"]

log = logging.getLogger("osiris.orchestrator")
_dec = msgspec.json.Decoder(MarketTick)


class TickBuffer:
    """Collects valid ticks; every `size` of them become one batch on `batches` (bounded:
    while a run is busy the waiting batch is replaced by the newest one and counted)."""

    def __init__(self, size: int) -> None:
        self.size = max(1, size)
        self.ticks: list[MarketTick] = []
        self.batches: asyncio.Queue[list[MarketTick]] = asyncio.Queue(maxsize=1)
        self.received = 0
        self.malformed = 0
        self.last_malformed: str | None = None
        self.coalesced = 0

    def feed(self, data: bytes, source: str = "market.ticks") -> MarketTick | None:
        self.received += 1
        try:
            tick = _dec.decode(data)
            if min(tick.open, tick.high, tick.low, tick.close) <= 0 or tick.high < tick.low:
                raise ValueError(f"inconsistent prices (o={tick.open} h={tick.high} "
                                 f"l={tick.low} c={tick.close})")
        except (msgspec.ValidationError, msgspec.DecodeError, ValueError) as e:
            self.malformed += 1
            if isinstance(e, msgspec.ValidationError):
                field, problem = validation_error_field(e)
                why = f"field {field!r}: {problem}" if field else problem
            else:
                why = str(e)
            self.last_malformed = f"malformed tick on {source}: {why} ({data[:120]!r})"
            if self.malformed <= 10 or self.malformed % 1000 == 0:
                log.warning("%s (%d so far; skipped)", self.last_malformed, self.malformed)
            return None
        self.ticks.append(tick)
        if len(self.ticks) >= self.size:
            batch, self.ticks = self.ticks[: self.size], self.ticks[self.size :]
            if self.batches.full():
                self.batches.get_nowait()
                self.coalesced += 1
            self.batches.put_nowait(batch)
        return tick

    def facts(self) -> dict[str, Any]:
        return {"ticks_received": self.received, "ticks_buffered": len(self.ticks),
                "malformed_ticks": self.malformed, "last_malformed": self.last_malformed,
                "batches_coalesced": self.coalesced}


async def redis_messages(url: str, channel: str, state: dict[str, Any]) -> AsyncIterator[bytes]:
    """Messages of a Redis pub/sub channel, forever; reconnects with backoff (noted in state)."""
    import redis.asyncio as aioredis
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeout

    delay = 0.2
    while True:
        client = aioredis.from_url(url)
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(channel)
            state.update(redis="connected", redis_error=None)
            delay = 0.2
            while True:
                msg = await pubsub.get_message(timeout=1.0)
                if msg is None or msg.get("type") != "message":
                    continue
                data = msg["data"]
                yield data if isinstance(data, bytes) else str(data).encode()
        except (RedisConnectionError, RedisTimeout, OSError) as e:
            state.update(redis="reconnecting", redis_error=repr(e),
                         redis_reconnects=state.get("redis_reconnects", 0) + 1)
            log.warning("redis %s: %r; reconnecting in %.1fs", url, e, delay)
        finally:
            try:
                await pubsub.aclose()
                await client.aclose()
            except Exception:  # noqa: BLE001 - the connection is gone anyway
                pass
        await asyncio.sleep(delay + random.random() * delay / 2)
        delay = min(delay * 2, 10.0)
