"""Client side of the bus: connect quickly, request with typed errors, publish, gather.

Used by actors (through their context), the CLI, the gateway and tests alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar, overload

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from osiris_core.config import OsirisSettings
from osiris_core.errors import (
    ERROR_CODE_HEADER,
    ERROR_HEADER,
    RETRY_ELSEWHERE_HEADER,
    BadRequest,
    InvalidField,
    NoResponders,
    NotFound,
    PayloadTooLarge,
    RequestTimeout,
    ServiceError,
    Unavailable,
)
from osiris_core.nats.acks import JetStreamAcks
from osiris_core.nats.connection import nats_reachable, open_connection, refusals_of
from osiris_core.nats.watch import (
    LOST_AFTER_S,
    ReplyMux,
    attempt_headers,
    is_cut_off,
    is_no_responders,
    is_notice,
    refusal_error,
    watched_request,
)
from osiris_core.observability import tracing
from osiris_core.protocol import (
    ControlOp,
    ControlReply,
    ControlRequest,
    NodeStatus,
    StartingReply,
    op_result_type,
)
from osiris_core.subjects import RUNTIME_STATUS, Subject, control, is_idempotent, starting

__all__ = [
    "MSG_ID_HEADER",
    "REPLAY_OF_HEADER",
    "Bus",
    "connect",
    "encode",
    "gather_nodes",
    "nats_reachable",
    "raise_for_error",
]

MSG_ID_HEADER = "Nats-Msg-Id"
REPLAY_OF_HEADER = "Osiris-Replay-Of"
"""A re-driven dead letter's original message id: consumers key idempotent writes by it."""
NO_RESPONDERS_GRACE_S = 0.25
T = TypeVar("T")
R = TypeVar("R")
_encoder = msgspec.json.Encoder()
_BYTES = (bytes, bytearray, memoryview)


def encode(value: Any) -> bytes:
    """Wire encoding: bytes pass through, anything else is msgspec JSON."""
    if value is None:
        return b""
    if isinstance(value, _BYTES):  # a tuple: isinstance with a `|` union is slower
        return bytes(value)
    return _encoder.encode(value)


async def connect(
    url: str, *, name: str = "osiris", token: str = "", creds: str = "", **kwargs: Any
) -> NATS:
    """Connect to `url` (one or more servers, comma-separated) with a token or creds file:
    a short look first, then `osiris_core.nats.connection.open_connection` (fails fast on refused
    credentials). Processes with settings use `open_connection(settings)` directly."""
    settings = OsirisSettings(nats_url=url, nats_token=token, nats_creds=creds)
    reconnect = bool(kwargs.pop("allow_reconnect", True))
    return await open_connection(settings, name=name, reconnect=reconnect, **kwargs)


_BY_CODE: dict[int, type[ServiceError]] = {
    400: BadRequest, 404: NotFound, 413: PayloadTooLarge, 422: InvalidField, 503: Unavailable,
    504: RequestTimeout,
}
_decode_starting = msgspec.json.Decoder(StartingReply)
STARTING_PROBE_S = 0.25
STARTING_POLL_S = 0.2


class _NoResponderWait:
    """What a caller does when nobody serves a subject: retry briefly (interest can lag a
    moment behind a responder's SUB — seen right after another connection unsubscribed, and
    by design across a cluster), then ask whether a replica is still starting and, if one
    is, keep retrying for as long as it says requests may wait."""

    def __init__(self, bus: Bus, name: str, timeout: float) -> None:
        self.bus, self.name = bus, name
        self.loop = asyncio.get_running_loop()
        now = self.loop.time()
        self.deadline = now + timeout
        self.grace_end = now + min(timeout, NO_RESPONDERS_GRACE_S)
        self.pause = 0.002
        self.starting_until: float | None = None

    async def wait(self) -> None:
        """Sleep before the next try, or raise `NoResponders`."""
        now = self.loop.time()
        if now + self.pause <= self.grace_end:
            await asyncio.sleep(self.pause)
            self.pause *= 2
            return
        reply = await self.bus._starting(self.name)
        if reply is not None and self.starting_until is None:
            self.starting_until = min(now + reply.wait_s, self.deadline)
        if reply is None or self.starting_until is None or now >= self.starting_until:
            why = (f" ({reply.actor} on {reply.node} is still starting)" if reply else "")
            raise NoResponders(f"no actor is serving {self.name}{why}")
        await asyncio.sleep(min(STARTING_POLL_S, max(self.starting_until - now, 0.001)))


def raise_for_error(msg: Msg) -> None:
    """Raise the ServiceError an error reply carries (NATS micro headers + JSON body)."""
    headers = msg.headers or {}
    if ERROR_CODE_HEADER not in headers:
        return
    try:
        code = int(headers[ERROR_CODE_HEADER])
    except ValueError:
        code = 500
    text = headers.get(ERROR_HEADER, "error")
    detail: dict[str, Any] = {}
    field = None
    if msg.data:
        try:
            body = msgspec.json.decode(msg.data)
            if isinstance(body, dict):
                text = str(body.get("error", text))
                field = body.get("field")
                detail = body.get("detail") or {}
        except msgspec.DecodeError:
            pass
    detail["retry_elsewhere"] = (headers.get(RETRY_ELSEWHERE_HEADER) == "1"
                                 or detail.get("retry_elsewhere") is True)  # an older replica
    err = _BY_CODE.get(code, ServiceError)(text, code=code, field=field, **detail)
    raise err


def _decode_reply(msg: Msg, reply_type: type[Any] | None) -> Any:
    raise_for_error(msg)
    if reply_type is bytes:
        return msg.data
    if reply_type is not None:
        return msgspec.json.decode(msg.data, type=reply_type)
    if not msg.data:
        return None
    try:
        return msgspec.json.decode(msg.data)
    except msgspec.DecodeError:
        return msg.data


class Bus:
    """Thin typed wrapper over a NATS connection."""

    def __init__(self, nc: NATS, *, ack_timeout: float = 5.0) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self._acks = JetStreamAcks(nc, ack_timeout)
        self._mux = ReplyMux(nc)
        self._refusals = refusals_of(nc)
        self._refusals.muxes.add(self._mux)  # a refused publish fails its watched requests

    @overload
    async def request(self, subject: Subject | str, payload: Any = None, *,
                      reply_type: type[T], timeout: float = 30.0,
                      headers: dict[str, str] | None = None,
                      retry: bool | None = None) -> T: ...

    @overload
    async def request(self, subject: Subject | str, payload: Any = None, *,
                      reply_type: None = None, timeout: float = 30.0,
                      headers: dict[str, str] | None = None,
                      retry: bool | None = None) -> Any: ...

    async def request(
        self,
        subject: Subject | str,
        payload: Any = None,
        *,
        reply_type: type[T] | None = None,
        timeout: float = 30.0,
        headers: dict[str, str] | None = None,
        retry: bool | None = None,
    ) -> Any:
        """Send a request; decode the reply as `reply_type` (or JSON / bytes).

        Waits for a replica that is still starting (bounded by its `request_wait_s` and by
        `timeout`). On an idempotent subject (or with `retry=True`) the request is watched:
        when the replica serving it dies or is cut off by its shutdown, it is re-sent once to
        another replica with the same `Osiris-Request-Id` (`osiris_core.nats.watch`). Raises
        `NoResponders` (503: nobody serves the subject), `Unavailable` (503: the replica
        died, and so did the retry), `RequestTimeout` (504), or the actor's ServiceError.
        """
        if tracing.ON:
            out = tracing.outgoing(str(subject), "request", headers)
            try:
                reply = await self._request(subject, payload, reply_type, timeout, out.headers,
                                            retry)
            except BaseException as e:
                out.end(e)
                raise
            out.end()
            return reply
        return await self._request(subject, payload, reply_type, timeout, headers, retry)

    @overload
    async def control(self, actor: str, op: ControlOp[R], *, timeout: float = 30.0,
                      result_type: None = None) -> ControlReply[R]: ...

    @overload
    async def control(self, actor: str, op: ControlRequest, *, timeout: float = 30.0,
                      result_type: None = None) -> ControlReply[dict[str, Any]]: ...

    @overload
    async def control(self, actor: str, op: ControlOp[Any] | ControlRequest, *,
                      timeout: float = 30.0, result_type: type[T]) -> ControlReply[T]: ...

    async def control(self, actor: str, op: ControlOp[Any] | ControlRequest, *,
                      timeout: float = 30.0, result_type: Any = None) -> ControlReply[Any]:
        """Send a control op to `actor` (`osiris.<actor>.control`) and return its reply, the
        result decoded as the op's declared type (`PauseOp()` → `ControlReply[PauseResult]`)
        or as `result_type` when given (an untyped `ControlRequest`'s is a dict). Raises the
        actor's ServiceError like `request`."""
        tp = result_type
        if tp is None:
            tp = dict[str, Any] if isinstance(op, ControlRequest) else op_result_type(type(op))
        reply: ControlReply[Any] = await self.request(
            control(actor), op, reply_type=ControlReply[tp], timeout=timeout)  # type: ignore[valid-type]
        return reply

    async def _request(self, subject: Subject | str, payload: Any, reply_type: type[T] | None,
                       timeout: float, headers: dict[str, str] | None,
                       retry: bool | None) -> Any:
        name = str(subject)
        data = encode(payload)
        waiter = _NoResponderWait(self, name, timeout)
        if retry if retry is not None else is_idempotent(subject):
            msg = await watched_request(self._mux, name, data, headers, timeout=timeout,
                                        retry=True, no_responders=waiter.wait)
            return _decode_reply(msg, reply_type)
        t0 = time.monotonic()
        while True:
            left = waiter.deadline - waiter.loop.time()
            try:
                msg = await self.nc.request(name, data, timeout=max(left, 0.001), headers=headers)
                break
            except NoRespondersError:
                await waiter.wait()
            except (TimeoutError, NatsTimeout):
                if self._refusals.since(name, t0):
                    raise refusal_error(name) from None
                raise RequestTimeout(f"no reply on {name} within {timeout:g}s") from None
        return _decode_reply(msg, reply_type)

    async def _starting(self, name: str) -> StartingReply | None:
        """The first replica that answers "still starting" for subject `name`, if any."""
        try:
            msg = await self.nc.request(starting(name), b"", timeout=STARTING_PROBE_S)
            return _decode_starting.decode(msg.data)
        except Exception:  # noqa: BLE001 - no responders, timeout, garbage: nobody starting
            return None

    async def stream(
        self,
        subject: Subject | str,
        payload: Any,
        *,
        item_type: type[T],
        timeout: float = 30.0,
        done: Callable[[T], bool] = lambda item: bool(getattr(item, "done", False)),
        headers: dict[str, str] | None = None,
    ) -> AsyncIterator[T]:
        """Streaming request: publish with a private reply inbox, yield each chunk until one
        is `done`. `timeout` bounds the wait for each chunk. Raises like `request`; on an
        idempotent subject a replica that dies before the first chunk gets the request
        re-sent once, and one that dies mid-stream is a clear 503 at once.
        An empty message decodes as `{}` (for `item_type=Any` callers)."""
        if not tracing.ON:
            async for item in self._stream(subject, payload, item_type, timeout, done, headers):
                yield item
            return
        out = tracing.outgoing(str(subject), "request", headers)
        try:
            async for item in self._stream(subject, payload, item_type, timeout, done,
                                           out.headers):
                yield item
        except GeneratorExit:  # the caller stopped reading: not a failure
            out.end()
            raise
        except BaseException as e:
            out.end(e)
            raise
        out.end()

    async def _stream(self, subject: Subject | str, payload: Any, item_type: type[T],
                      timeout: float, done: Callable[[T], bool],
                      headers: dict[str, str] | None) -> AsyncIterator[T]:
        name = str(subject)
        data = encode(payload)
        inbox = self.nc.new_inbox()
        sub = await self.nc.subscribe(inbox, max_msgs=0)
        waiter = _NoResponderWait(self, name, timeout)
        watched = is_idempotent(subject)
        if watched:
            headers = attempt_headers(headers, uuid.uuid4().hex)
        loop = asyncio.get_running_loop()
        chunks, resent = 0, False
        t0 = time.monotonic()
        try:
            await self.nc.publish(name, data, reply=inbox, headers=headers)
            heard = last_chunk = loop.time()
            while True:
                now = loop.time()
                wait = last_chunk + timeout - now
                if watched:
                    wait = min(wait, heard + LOST_AFTER_S - now)
                try:
                    msg = await sub.next_msg(timeout=max(wait, 0.001))
                except (TimeoutError, NatsTimeout):
                    if self._refusals.since(name, t0):
                        raise refusal_error(name) from None
                    if loop.time() >= last_chunk + timeout:
                        raise RequestTimeout(f"no chunk on {name} within {timeout:g}s") from None
                    if chunks or resent:
                        raise Unavailable(
                            f"the replica streaming {name} stopped answering after {chunks} "
                            f"chunks (no word for {LOST_AFTER_S:g}s)", lost=True) from None
                    resent = True  # died before the first chunk: another replica starts over
                    await self.nc.publish(name, data, reply=inbox, headers=headers)
                    heard = loop.time()
                    continue
                heard = loop.time()
                if watched and is_notice(msg):
                    continue
                if not chunks and is_no_responders(msg):
                    await waiter.wait()  # no responders: as `request` does
                    await self.nc.publish(name, data, reply=inbox, headers=headers)
                    continue
                if watched and not chunks and not resent and is_cut_off(msg):
                    resent = True
                    await self.nc.publish(name, data, reply=inbox, headers=headers)
                    continue
                chunks += 1
                last_chunk = heard
                raise_for_error(msg)
                item = msgspec.json.decode(msg.data or b"{}", type=item_type)
                yield item
                if done(item):
                    return
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def publish(
        self,
        subject: Subject | str,
        payload: Any,
        *,
        msg_id: str | None = None,
        headers: dict[str, str] | None = None,
        durable: bool | None = None,
    ) -> bool:
        """Publish an event. Durable subjects go through JetStream with `Nats-Msg-Id`.

        Returns False when JetStream reported the message as a duplicate, True otherwise.
        A durable publish returns once JetStream holds the message; it raises `Unavailable`
        when no stream captures the subject and `RequestTimeout` when no ack comes.
        """
        is_durable = durable if durable is not None else getattr(subject, "durable", False)
        if tracing.ON:
            out = tracing.outgoing(str(subject), "publish", headers)
            try:
                sent = await self._publish(subject, payload, msg_id, out.headers, is_durable)
            except BaseException as e:
                out.end(e)
                raise
            out.end()
            return sent
        return await self._publish(subject, payload, msg_id, headers, is_durable)

    async def _publish(self, subject: Subject | str, payload: Any, msg_id: str | None,
                       headers: dict[str, str] | None, is_durable: bool) -> bool:
        hdrs = dict(headers or {})
        if msg_id:
            hdrs[MSG_ID_HEADER] = msg_id
        if is_durable:
            if not msg_id:
                raise ValueError(f"durable event {subject} needs a msg_id (the record's id)")
            return await self._acks.publish(str(subject), encode(payload), hdrs)
        await self.nc.publish(str(subject), encode(payload), headers=hdrs or None)
        return True

    async def gather(
        self, subject: str, payload: Any = None, *, timeout: float = 0.5, max_replies: int = 0
    ) -> list[Msg]:
        """Scatter-gather: collect every reply to one request until `timeout` passes."""
        inbox = self.nc.new_inbox()  # honours the connection's inbox prefix
        replies: list[Msg] = []
        done = asyncio.Event()

        async def collect(msg: Msg) -> None:
            replies.append(msg)
            if max_replies and len(replies) >= max_replies:
                done.set()

        sub = await self.nc.subscribe(inbox, cb=collect)
        try:
            await self.nc.publish(subject, encode(payload), reply=inbox)
            try:
                await asyncio.wait_for(done.wait(), timeout)
            except TimeoutError:
                pass
        finally:
            await sub.unsubscribe()
        return replies


QUIET_S = 0.03  # after the last runtime answered, how long to wait for another
_decode_node = msgspec.json.Decoder(NodeStatus)


async def gather_nodes(bus: Bus, window: float) -> list[NodeStatus]:
    """Every runtime's `osiris.runtime.status`: stops `QUIET_S` after the last reply, or
    after `window` (used by /health, the gpu supervisor and `osiris plugins`)."""
    nc = bus.nc
    inbox = nc.new_inbox()
    replies: list[NodeStatus] = []
    arrived = asyncio.Event()

    async def collect(msg: Msg) -> None:
        try:
            replies.append(_decode_node.decode(msg.data))
        except msgspec.MsgspecError:
            return
        arrived.set()

    sub = await nc.subscribe(inbox, cb=collect)
    try:
        await nc.publish(RUNTIME_STATUS.name, b"", reply=inbox)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + window
        wait = window
        while True:
            arrived.clear()
            try:
                await asyncio.wait_for(arrived.wait(), max(min(wait, deadline - loop.time()), 0))
            except TimeoutError:
                break
            wait = QUIET_S
    finally:
        await sub.unsubscribe()
    return replies
