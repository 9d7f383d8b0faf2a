"""A NATS micro service whose endpoints we dispatch ourselves.

Wire-compatible with `nats.micro` (it reuses its PING/INFO/STATS types and control
subjects, so `nats micro ls` and `$SRV.*` discovery work), but the endpoints run handlers
with bounded concurrency, keep honest per-endpoint stats, and drain on shutdown (nats.micro
unsubscribes, dropping requests already delivered).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.micro.service import (
    EndpointInfo,
    EndpointStats,
    ServiceInfo,
    ServicePing,
    ServiceStats,
    ServiceVerb,
    control_subject,
)

__all__ = ["Endpoint", "MicroService", "drain_sub", "finish", "leave"]

PENDING_LIMIT = 65_536  # requests buffered per endpoint beyond the in-flight bound


@dataclass
class Endpoint:
    """One request-reply subject of a service, with its stats."""

    name: str
    subject: str
    queue_group: str
    callback: Callable[[Msg], Awaitable[None]]
    metadata: dict[str, str] = field(default_factory=dict)
    num_requests: int = 0
    num_errors: int = 0
    processing_time_ns: int = 0
    last_error: str = ""
    errors_by_code: dict[int, int] = field(default_factory=dict)
    sub: Subscription | None = None

    def record(self, elapsed_ns: int, error: str | None, code: int | None = None) -> None:
        self.num_requests += 1
        self.processing_time_ns += elapsed_ns
        if error is not None:
            self.num_errors += 1
            self.last_error = error
            key = code or 500
            self.errors_by_code[key] = self.errors_by_code.get(key, 0) + 1

    def stats(self) -> EndpointStats:
        avg = self.processing_time_ns // self.num_requests if self.num_requests else 0
        return EndpointStats(
            name=self.name,
            subject=self.subject,
            queue_group=self.queue_group,
            num_requests=self.num_requests,
            num_errors=self.num_errors,
            last_error=self.last_error,
            processing_time=self.processing_time_ns,
            average_processing_time=avg,
        )


class MicroService:
    """Discovery subjects plus endpoints; `drain()` stops taking work without dropping any."""

    def __init__(
        self, nc: NATS, *, name: str, version: str, description: str = "",
        metadata: dict[str, str] | None = None,
    ) -> None:
        self.nc = nc
        self.id = nc._nuid.next().decode()
        self.name = name
        self.version = version
        self.description = description
        self.metadata = metadata or {}
        self.endpoints: list[Endpoint] = []
        self._discovery: list[Subscription] = []
        self.started = datetime.now(UTC)

    async def start(self) -> None:
        handlers = {
            ServiceVerb.PING: self._ping,
            ServiceVerb.INFO: self._info,
            ServiceVerb.STATS: self._stats,
        }
        for verb, cb in handlers.items():
            for name, sid in ((None, None), (self.name, None), (self.name, self.id)):
                subject = control_subject(verb, name=name, id=sid)
                self._discovery.append(await self.nc.subscribe(subject, cb=cb))

    async def add_endpoint(self, endpoint: Endpoint) -> None:
        endpoint.sub = await self.nc.subscribe(
            endpoint.subject, queue=endpoint.queue_group, cb=endpoint.callback,
            pending_msgs_limit=PENDING_LIMIT,
        )
        self.endpoints.append(endpoint)

    def endpoint(self, name: str) -> Endpoint | None:
        return next((e for e in self.endpoints if e.name == name), None)

    async def remove_endpoints(self, keep: frozenset[str] = frozenset(),
                               timeout: float = 5.0) -> None:
        """Leave the queue groups of every endpoint not in `keep` and forget them; requests
        already delivered are still dispatched (waited for up to `timeout`)."""
        gone = [e for e in self.endpoints if e.name not in keep]
        self.endpoints = [e for e in self.endpoints if e.name in keep]
        await finish(leave(gone), timeout)

    def drain_endpoints(self) -> list[asyncio.Task[None]]:
        """Leave every queue group now; the requests already delivered keep flowing to the
        callbacks. Returns the drains: each ends once its buffer is empty (see `finish`)."""
        return leave(self.endpoints)

    async def stop(self) -> None:
        await finish(self.drain_endpoints(), 0)
        for sub in self._discovery:
            try:
                await sub.unsubscribe()
            except Exception:  # noqa: BLE001
                pass
        self._discovery.clear()

    def info(self) -> ServiceInfo:
        return ServiceInfo(
            id=self.id, name=self.name, version=self.version, description=self.description,
            metadata=self.metadata,
            endpoints=[
                EndpointInfo(name=e.name, subject=e.subject, queue_group=e.queue_group,
                             metadata=e.metadata)
                for e in self.endpoints
            ],
        )

    def stats(self) -> ServiceStats:
        return ServiceStats(
            id=self.id, name=self.name, version=self.version, metadata=self.metadata,
            endpoints=[e.stats() for e in self.endpoints], started=self.started,
        )

    async def _reply(self, msg: Msg, body: dict[str, Any]) -> None:
        if msg.reply:
            await self.nc.publish(msg.reply, json.dumps(body, default=_json_default).encode())

    async def _ping(self, msg: Msg) -> None:
        ping = ServicePing(id=self.id, name=self.name, version=self.version,
                           metadata=self.metadata)
        await self._reply(msg, ping.to_dict())

    async def _info(self, msg: Msg) -> None:
        await self._reply(msg, self.info().to_dict())

    async def _stats(self, msg: Msg) -> None:
        await self._reply(msg, self.stats().to_dict())


def leave(endpoints: list[Endpoint]) -> list[asyncio.Task[None]]:
    """Start draining each endpoint's subscription: nats-py sends UNSUB at once, then waits
    (unbounded) for the buffered messages to be handed to the callback."""
    tasks = []
    for ep in endpoints:
        sub, ep.sub = ep.sub, None
        if sub is not None:
            tasks.append(asyncio.ensure_future(drain_sub(sub)))
    return tasks


DRAIN_LINGER_S = 0.25
"""How long a drained subscription still takes messages after the server confirmed its
UNSUB. nats-server may hand over a message it matched just before the UNSUB *after* the
PONG that confirms it (the publisher's connection routes on its own goroutine; seen under
CPU load: 1 request in ~10 runs of the crash-loop test). nats-py's own drain forgets the
subscription at the PONG and drops such a message silently — the caller then waits out its
timeout; lingering lets the endpoint answer it (served, or 503 from the gate)."""


async def drain_sub(sub: Subscription, linger: float = DRAIN_LINGER_S) -> None:
    """nats-py's `Subscription.drain` plus `linger`; errors swallowed (the connection may
    already be closing). Uses nats-py 2.16 internals (pinned): the public API cannot leave
    the server's interest while the client-side callback stays."""
    nc = sub._conn
    try:
        await nc._send_unsubscribe(sub._id)
        await nc.flush()
        await asyncio.sleep(linger)
        if sub._pending_queue is not None:
            await sub._pending_queue.join()
    except Exception:  # noqa: BLE001 - connection may already be closing
        pass
    finally:
        sub._stop_processing()
        nc._remove_sub(sub._id)
        sub._closed = True


async def finish(drains: list[asyncio.Task[None]], timeout: float) -> None:
    """Wait up to `timeout` for drains; cancel (and so drop the buffers of) the rest."""
    if not drains:
        return
    if timeout > 0:
        await asyncio.wait(drains, timeout=timeout)
    for t in drains:
        t.cancel()
    await asyncio.gather(*drains, return_exceptions=True)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return int(value.total_seconds() * 1e9)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
