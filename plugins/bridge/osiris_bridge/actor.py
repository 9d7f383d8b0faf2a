"""The bridge actor: NATS ⇄ Redis pub/sub on the seeds' channel names, without echo loops.

Loop prevention works across any number of bridges: a message the bridge puts on NATS
carries the header `Osiris-Bridged: redis`, and one it puts on Redis carries the field
`"_osiris_bridge": "nats"`; bridges never carry a marked message back. Redis pub/sub is
at-most-once: messages that arrive while Redis is away are counted and dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import time
from typing import Any
from urllib.parse import urlparse, urlunparse

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from osiris_contracts.messages import AudioChunk
from osiris_contracts.subjects import SHARED_SUBJECTS
from osiris_core import Actor, EventMeta
from osiris_core.subjects import CORE_SUBJECTS

from .config import BridgeConfig

BRIDGED_HEADER = "Osiris-Bridged"
MARKER = "_osiris_bridge"
_MARK_PREFIX = b'{"' + MARKER.encode() + b'":"nats"'
_DURABLE = {s.name for s in (*CORE_SUBJECTS, *SHARED_SUBJECTS) if s.durable}
_audio = msgspec.json.Decoder(AudioChunk)


def redact(url: str) -> str:
    p = urlparse(url)
    if p.password:
        netloc = f"{p.username or ''}:***@{p.hostname}{':' + str(p.port) if p.port else ''}"
        return urlunparse(p._replace(netloc=netloc))
    return url


def mark(data: bytes) -> bytes | None:
    """The JSON object with the bridge marker first; None when it is not a JSON object."""
    body = data.strip()
    if not body.startswith(b"{") or not body.endswith(b"}"):
        return None
    inner = body[1:-1].strip()
    return _MARK_PREFIX + (b"," + inner if inner else b"") + b"}"


def is_marked(data: bytes) -> bool:
    if MARKER.encode() not in data[:64]:
        return False
    try:
        obj = msgspec.json.decode(data)
    except msgspec.DecodeError:
        return False
    return isinstance(obj, dict) and MARKER in obj


class BridgeActor(Actor[BridgeConfig]):
    name = "bridge"
    description = "mirrors the documented channels between NATS and Redis pub/sub"

    async def on_start(self) -> None:
        dirs = self.config.directions()
        self.to_redis = sorted(c for c, d in dirs.items() if d in ("both", "to_redis"))
        self.from_redis = sorted(c for c, d in dirs.items() if d in ("both", "from_redis"))
        self.redis: aioredis.Redis | None = None
        self.state = "idle" if not self.config.redis_url else "connecting"
        self.connected = asyncio.Event()
        self.reconnects = 0
        self.last_error: str | None = None
        self.connected_since: float | None = None
        self.counts = {"to_redis": 0, "from_redis": 0, "echoes_dropped": 0,
                       "dropped_while_disconnected": 0, "malformed_from_redis": 0}
        if not self.config.redis_url:
            self.log.info("bridge: idle (no [plugins.bridge] redis_url / OSIRIS_REDIS_URL)")
            return
        for ch in self.to_redis:  # channels come from config: managed subscriptions
            await self.subscribe(ch, self._from_nats, event_type=bytes)
        self.spawn(self._redis_loop(), "redis")

    async def on_stop(self) -> None:
        if self.redis is not None:
            with contextlib.suppress(Exception):
                await self.redis.aclose()

    # --- NATS → Redis ---------------------------------------------------------------------
    async def _from_nats(self, data: bytes, meta: EventMeta) -> None:
        if meta.headers and BRIDGED_HEADER in meta.headers:
            self.counts["echoes_dropped"] += 1  # it came from Redis: never send it back
            return
        client = self.redis
        if client is None or not self.connected.is_set():
            self.counts["dropped_while_disconnected"] += 1
            return
        if meta.subject == "audio.bytes":
            try:
                payload: bytes = _audio.decode(data).wav_b64.encode()
            except (msgspec.ValidationError, msgspec.DecodeError):
                payload = data
        else:
            payload = mark(data) or data
        try:
            await client.publish(meta.subject, payload)
            self.counts["to_redis"] += 1
        except (RedisError, OSError) as e:
            self.counts["dropped_while_disconnected"] += 1
            self._lost(e)

    # --- Redis → NATS ---------------------------------------------------------------------
    async def _redis_loop(self) -> None:
        delay = self.config.reconnect_initial_s
        while True:
            client = aioredis.from_url(self.config.redis_url, socket_connect_timeout=2,
                                       health_check_interval=5)
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                await client.ping()
                if self.from_redis:
                    await pubsub.subscribe(*self.from_redis)
                self.redis = client
                self.state = "connected"
                self.connected_since = time.time()
                self.connected.set()
                self.log.info("bridge: connected to %s (to_redis %s; from_redis %s)",
                              redact(self.config.redis_url), self.to_redis, self.from_redis)
                delay = self.config.reconnect_initial_s
                await self._pump(client, pubsub)
            except (RedisError, OSError) as e:
                self._lost(e)
            finally:
                self.connected.clear()
                self.redis = None
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                with contextlib.suppress(Exception):
                    await client.aclose()
            self.reconnects += 1
            wait = delay / 2 + random.random() * delay / 2
            self.log.warning("bridge: redis %s unavailable (%s); reconnect #%d in %.2fs",
                             redact(self.config.redis_url), self.last_error, self.reconnects, wait)
            await asyncio.sleep(wait)
            delay = min(delay * 2, self.config.reconnect_max_s)

    async def _pump(self, client: aioredis.Redis, pubsub: Any) -> None:
        last_ping = time.monotonic()
        while True:
            if self.from_redis:
                # get_message can return None (and swallows subscribe confirmations): loop
                msg = await pubsub.get_message(timeout=1.0)
            else:
                msg = None
                await asyncio.sleep(1.0)
            if time.monotonic() - last_ping >= 1.0:
                await client.ping()  # notice a dead Redis even when nothing flows
                last_ping = time.monotonic()
            if msg is None or msg.get("type") != "message":
                continue
            channel = msg["channel"].decode() if isinstance(msg["channel"], bytes) else msg["channel"]
            data = msg["data"] if isinstance(msg["data"], bytes) else str(msg["data"]).encode()
            await self._to_nats(channel, data)

    async def _to_nats(self, channel: str, data: bytes) -> None:
        if is_marked(data):
            self.counts["echoes_dropped"] += 1  # we put it there from NATS
            return
        try:
            msgspec.json.decode(data)
        except msgspec.DecodeError as e:
            self.counts["malformed_from_redis"] += 1
            self.last_error = f"not JSON on redis {channel}: {e} ({data[:80]!r})"
            return
        headers = {BRIDGED_HEADER: "redis"}
        if channel in _DURABLE:
            msg_id = "redis:" + hashlib.sha1(data).hexdigest()
            await self.ctx.bus.publish(channel, data, msg_id=msg_id, headers=headers,
                                       durable=True)
        else:
            await self.ctx.nc.publish(channel, data, headers=headers)
        self.counts["from_redis"] += 1

    def _lost(self, e: BaseException) -> None:
        self.last_error = f"{type(e).__name__}: {e}"
        if self.state == "connected":
            self.state = "reconnecting"
        elif self.state == "connecting" and isinstance(e, RedisConnectionError | OSError):
            self.state = "reconnecting"
        self.connected.clear()

    def facts(self) -> dict[str, Any]:
        if not self.config.redis_url:
            return {"state": "idle", "reason": "redis_url is empty: nothing is bridged "
                    "(set [plugins.bridge] redis_url or OSIRIS_REDIS_URL)"}
        return {"state": self.state, "redis_url": redact(self.config.redis_url),
                "connected_since": self.connected_since, "reconnects": self.reconnects,
                "last_error": self.last_error, "to_redis_channels": self.to_redis,
                "from_redis_channels": self.from_redis, **self.counts}
