"""What every route shares: the bus, config, metrics, limiter, health — and the three ways
a route talks to the bus (request, token stream, event subscription), each of which is
cancelled when the HTTP client goes away."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Iterable
from typing import Any, TypeVar

import msgspec
from litestar import Request

from osiris_core.config import OsirisSettings
from osiris_core.errors import ServiceError, Unavailable
from osiris_core.nats.bus import Bus, encode
from osiris_core.observability.metrics import ProcessMetrics
from osiris_core.protocol import CancelRequest
from osiris_core.subjects import REQUEST_ID_HEADER, Catalogue, cancel

from .config import GatewayConfig
from .errors import ClientDisconnected
from .health import HealthCollector
from .metrics import GatewayMetrics
from .security import TokenBuckets

__all__ = ["REQUEST_ID_HEADER", "GatewayState"]  # the header comes from osiris_core.subjects

T = TypeVar("T")
_decode_any = msgspec.json.Decoder()


async def _wait_disconnect(request: Request[Any, Any, Any]) -> None:
    receive = request.receive
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


class GatewayState:
    """Held in `app.state.gw`."""

    def __init__(self, config: GatewayConfig, settings: OsirisSettings, catalogue: Catalogue,
                 bus: Bus | None = None, process_metrics: ProcessMetrics | None = None) -> None:
        self.config = config
        self.settings = settings
        self.catalogue = catalogue
        self.bus_given = bus
        self._bus: Bus | None = bus
        self.metrics = GatewayMetrics()
        self.process_metrics = process_metrics  # the actors of this process (osiris run)
        self.limiter = TokenBuckets(config.rate_limit_per_s, config.rate_limit_burst)
        self.health = HealthCollector(lambda: self.bus, config.health_cache_s,
                                      config.health_window_s)
        allowed = config.event_subjects or [s.name for s in catalogue if s.kind == "event"]
        self.event_subjects: frozenset[str] = frozenset(allowed)
        self.sse_subs = 0
        self._rid_prefix = uuid.uuid4().hex[:12] + "-"
        self._seq = 0

    @property
    def bus(self) -> Bus:
        if self._bus is None:
            raise Unavailable("the gateway is not connected to NATS")
        return self._bus

    @bus.setter
    def bus(self, value: Bus | None) -> None:
        self._bus = value

    # --- request-reply ----------------------------------------------------------------------
    def request_id(self) -> str:
        self._seq += 1
        return f"{self._rid_prefix}{self._seq:x}"

    async def call(
        self, request: Request[Any, Any, Any] | None, actor: str, subject: str, payload: Any, *,
        reply_type: type[T] | None = None, timeout: float | None = None,
    ) -> Any:
        """Bus request with metrics. Given the HTTP `request` (long work: generation, speech,
        proposals), a client that disconnects cancels it, and the actor is told through its
        control subject with the request id it was sent. Writes (feedback) are never
        cancelled: they pass no request."""
        t = timeout if timeout is not None else self.config.request_timeout_s
        rid = self.request_id()
        coro = self.bus.request(subject, payload, reply_type=reply_type, timeout=t,
                                headers={REQUEST_ID_HEADER: rid})
        t0 = time.perf_counter()
        outcome = "ok"
        try:
            if request is None:
                return await coro
            return await self._until_disconnect(request, coro, actor, rid)
        except ServiceError as e:
            outcome = str(e.code)
            raise
        except ClientDisconnected:
            outcome = "disconnected"
            raise
        finally:
            self.metrics.actor_call(actor, subject, outcome, time.perf_counter() - t0)

    async def _until_disconnect(self, request: Request[Any, Any, Any], coro: Awaitable[T],
                                actor: str, rid: str) -> T:
        work = asyncio.ensure_future(coro)
        watch = asyncio.ensure_future(_wait_disconnect(request))
        try:
            await asyncio.wait((work, watch), return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            work.cancel()
            watch.cancel()
            raise
        if work.done():
            watch.cancel()
            return work.result()
        work.cancel()
        with contextlib.suppress(BaseException):
            await work
        await self.cancel_upstream(actor, rid)
        raise ClientDisconnected(actor)

    async def cancel_upstream(self, actor: str, rid: str) -> None:
        """Fire-and-forget `CancelRequest(rid)` on `osiris.<actor>.cancel`: the actor may stop
        the work it was sent with `Osiris-Request-Id: rid` (nothing listening costs nothing)."""
        self.metrics.child(self.metrics.disconnects, actor).inc()
        with contextlib.suppress(Exception):
            await self.bus.nc.publish(cancel(actor), encode(CancelRequest(request_id=rid)))

    # --- token streams ----------------------------------------------------------------------
    async def whole(self, actor: str, subject: str, payload: Any, *,
                    timeout: float | None = None) -> AsyncGenerator[dict[str, Any], None]:
        """`stream` for an actor that answers in one piece: one final item."""
        t = timeout if timeout is not None else self.config.generate_timeout_s
        reply = await self.call(None, actor, subject, payload, timeout=t)
        yield {"done": True, "reply": reply}

    async def stream(self, actor: str, subject: str, payload: Any, *,
                     timeout: float | None = None) -> AsyncGenerator[dict[str, Any], None]:
        """Streaming request: yields each chunk (a dict) until one is `done`. A reply that is
        not a chunk (an actor that does not stream) is yielded once as the final item.
        Leaving the loop early (client gone) unsubscribes and cancels upstream."""
        t = timeout if timeout is not None else self.config.generate_timeout_s
        rid = self.request_id()
        finished = False
        t0 = time.perf_counter()
        outcome = "ok"
        self.sse_subs += 1
        self.metrics.sse_subscriptions.inc()
        try:
            async for raw in self.bus.stream(subject, payload, item_type=Any, timeout=t,
                                             headers={REQUEST_ID_HEADER: rid},
                                             done=_stream_done):
                item: dict[str, Any] = raw if isinstance(raw, dict) else {"value": raw}
                if not _is_chunk(item):  # an actor that answers in one piece
                    item = {"done": True, "reply": item}
                finished = bool(item.get("done"))
                yield item
                if finished:
                    return
        except ServiceError as e:
            outcome = str(e.code)
            finished = True
            raise
        finally:
            self.sse_subs -= 1
            self.metrics.sse_subscriptions.dec()
            if not finished:
                outcome = "disconnected"
                await self.cancel_upstream(actor, rid)
            self.metrics.actor_call(actor, subject, outcome, time.perf_counter() - t0)

    # --- events -----------------------------------------------------------------------------
    def allowed_events(self, requested: Iterable[str]) -> list[str]:
        """Validate `/events?subjects=`: exact allowed subjects, or wildcard patterns that
        match at least one allowed subject (deliveries are filtered to the allow-list)."""
        out: list[str] = []
        for s in requested:
            s = s.strip()
            if not s:
                continue
            if s in self.event_subjects or any(_matches(s, a) for a in self.event_subjects):
                out.append(s)
            else:
                raise ValueError(s)
        return out

    def is_allowed(self, subject: str) -> bool:
        return subject in self.event_subjects

    async def events(self, patterns: list[str], kind: str) -> AsyncIterator[tuple[str, bytes]]:
        """(subject, raw payload) of allowed events. `("", b"subscribed")` comes first, once
        the subscription is live; `("", b"")` ticks every `sse_ping_s`, so an idle stream
        still notices a dead client. The subscription goes with the iterator."""
        nc = self.bus.nc
        queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(maxsize=1024)

        async def cb(msg: Any) -> None:
            if self.is_allowed(msg.subject):
                if queue.full():  # a slow client loses the oldest, never blocks the bus
                    queue.get_nowait()
                queue.put_nowait((msg.subject, msg.data))

        subs = [await nc.subscribe(p, cb=cb) for p in patterns]
        await nc.flush()
        self.sse_subs += len(subs)
        self.metrics.sse_subscriptions.inc(len(subs))
        self.metrics.sse_streams.labels(kind).inc()
        try:
            yield ("", b"subscribed")
            while True:
                try:
                    yield await asyncio.wait_for(queue.get(), self.config.sse_ping_s)
                except TimeoutError:
                    yield ("", b"")
        finally:
            self.sse_subs -= len(subs)
            self.metrics.sse_subscriptions.dec(len(subs))
            self.metrics.sse_streams.labels(kind).dec()
            for sub in subs:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()


def _matches(pattern: str, subject: str) -> bool:
    """NATS wildcard match (`*` one token, `>` the rest)."""
    p, s = pattern.split("."), subject.split(".")
    for i, tok in enumerate(p):
        if tok == ">":
            return len(s) > i
        if i >= len(s) or (tok != "*" and tok != s[i]):
            return False
    return len(p) == len(s)


def _is_chunk(item: Any) -> bool:
    """A GenerateChunk-shaped dict (as opposed to a whole reply)."""
    return isinstance(item, dict) and "index" in item and "text" in item


def _stream_done(item: Any) -> bool:
    """The last message of a stream: a `done` chunk, or a whole (non-chunk) reply."""
    return not _is_chunk(item) or bool(item.get("done"))
