"""Durable publishes: JetStream acks gathered on one wildcard inbox (used by `Bus.publish`)."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from osiris_core.errors import RequestTimeout, ServiceError, Unavailable

__all__ = ["JetStreamAcks"]


class _PubAck(msgspec.Struct):
    """JetStream's reply to a publish into a stream."""

    stream: str = ""
    seq: int = 0
    duplicate: bool = False
    error: dict[str, Any] | None = None


_decode_ack = msgspec.json.Decoder(_PubAck)


class JetStreamAcks:
    """Durable publishes awaiting their PubAck on one wildcard inbox of ours.

    Does what `js.publish` does at two-thirds of its CPU (measured 38 vs 57 µs a message
    with 256 in flight): no `wait_for` per message, the ack decoded by msgspec instead of
    `json.loads` into a dataclass. The durable publishes of the feedback and orchestrator
    actors go through here.
    """

    def __init__(self, nc: NATS, timeout: float) -> None:
        self.nc = nc
        self.timeout = timeout
        self.waiting: dict[str, asyncio.Future[Msg]] = {}
        self.next_token = 0
        self.prefix = ""
        self._lock = asyncio.Lock()

    async def _subscribe(self) -> None:
        async with self._lock:
            if not self.prefix:
                prefix = f"{self.nc.new_inbox()}."
                await self.nc.subscribe(f"{prefix}*", cb=self._on_ack)
                self.prefix = prefix

    async def _on_ack(self, msg: Msg) -> None:
        fut = self.waiting.pop(msg.subject[len(self.prefix):], None)
        if fut is not None and not fut.done():
            fut.set_result(msg)

    async def publish(self, subject: str, data: bytes, headers: dict[str, str]) -> bool:
        """Publish into the stream capturing `subject`; True unless it was a duplicate."""
        if not self.prefix:
            await self._subscribe()
        self.next_token += 1
        token = str(self.next_token)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Msg] = loop.create_future()
        self.waiting[token] = fut
        timer = loop.call_later(self.timeout, self._expire, token)
        try:
            await self.nc.publish(subject, data, reply=self.prefix + token, headers=headers)
            msg = await fut
        finally:
            timer.cancel()
            self.waiting.pop(token, None)
        if msg.headers and msg.headers.get("Status") == "503":
            raise Unavailable(f"no JetStream stream captures {subject}")
        ack = _decode_ack.decode(msg.data)
        if ack.error:
            raise ServiceError(f"JetStream refused {subject}: "
                               f"{ack.error.get('description', ack.error)}",
                               code=int(ack.error.get("code") or 500))
        return not ack.duplicate

    def _expire(self, token: str) -> None:
        fut = self.waiting.pop(token, None)
        if fut is not None and not fut.done():
            fut.set_exception(RequestTimeout(f"no JetStream ack within {self.timeout:g}s"))
