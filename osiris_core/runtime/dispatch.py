"""Request dispatch: the gate, decoding, the handler call, the reply and its errors.

Every failure while serving one request — a payload that does not decode, a handler that
raises, a result that does not encode, a reply larger than the connection's `max_payload` —
becomes that request's error reply (4xx for the caller's mistake, 413 too large, 500
otherwise), is logged naming the subject and counted on its endpoint. It never restarts the
actor; only `ActorFatal` does (DESIGN §13).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine
from time import perf_counter_ns
from typing import TYPE_CHECKING, Any

import msgspec
from nats.aio.msg import Msg

from osiris_core.actor import RequestContext, ServiceSpec
from osiris_core.config import validation_error_field
from osiris_core.errors import (
    ERROR_CODE_HEADER,
    ERROR_HEADER,
    RETRY_ELSEWHERE_HEADER,
    ActorFatal,
    BadRequest,
    InvalidField,
    PayloadTooLarge,
    ServiceError,
    Unavailable,
)
from osiris_core.nats.bus import encode
from osiris_core.nats.micro import PENDING_LIMIT, Endpoint
from osiris_core.nats.watch import Heartbeats
from osiris_core.observability import tracing, usage
from osiris_core.observability.metrics import EndpointMetrics
from osiris_core.protocol import ActorWanted, ErrorReply
from osiris_core.runtime.eager import start_eagerly
from osiris_core.runtime.lifecycle import State
from osiris_core.subjects import ACTOR_WANTED, REQUEST_ID_HEADER

if TYPE_CHECKING:
    from osiris_core.runtime.host import CellView

__all__ = ["REPLY_HEADROOM", "Dispatcher", "bad_request", "make_decoder", "reply_budget",
           "respond_error"]

WANTED_REPEAT_S = 1.0  # a paused actor with waiting requests is announced again this often
REPLY_HEADROOM = 4096
"""Bytes of a connection's max_payload kept free in every reply for the headers the bus and
the caller's tracing may add: a reply's body may use `reply_budget(max_payload)`."""
_error_encoder = msgspec.json.Encoder()


def make_decoder(tp: Any) -> Callable[[bytes], Any]:
    """Decoder for a handler's declared request type (Struct, dict, bytes, None, Any)."""
    if tp is None or tp is type(None):
        return lambda data: None
    if tp is bytes:
        return lambda data: data
    dec = msgspec.json.Decoder(tp)

    def decode(data: bytes) -> Any:
        return dec.decode(data or b"{}")

    return decode


def bad_request(subject: str, err: Exception) -> BadRequest:
    """A decode error as the caller's mistake: 422 naming the field (as over HTTP), or 400
    when the payload is not valid JSON at all."""
    if isinstance(err, msgspec.ValidationError):
        field, problem = validation_error_field(err)
        where = f"field {field!r}: " if field else ""
        cls = InvalidField if field else BadRequest
        return cls(f"invalid request on {subject}: {where}{problem}", field=field)
    return BadRequest(f"invalid JSON payload on {subject}: {err}")


async def respond_error(nc: Any, msg: Msg, err: ServiceError) -> None:
    """Send `err` as the NATS micro error reply (headers + JSON body); never raises."""
    if not msg.reply:
        return
    body = ErrorReply(error=err.message, code=err.code, field=err.field, detail=err.detail)
    headers = {ERROR_HEADER: err.message.replace("\r", " ").replace("\n", " ")[:1000],
               ERROR_CODE_HEADER: str(err.code)}
    if err.retry_elsewhere:
        headers[RETRY_ELSEWHERE_HEADER] = "1"
    with contextlib.suppress(Exception):
        await nc.publish(msg.reply, _error_encoder.encode(body), headers=headers)


def reply_budget(max_payload: int) -> int:
    """The bytes a reply's body may use on a connection with this `max_payload`."""
    return max_payload - REPLY_HEADROOM


def cut_off(actor: str) -> Unavailable:
    """The 503 of a request the actor stopped before answering: another replica may."""
    return Unavailable(f"{actor} stopped before replying (request cut off)",
                       retry_elsewhere=True)


def check_size(subject: str, data: bytes, max_payload: int) -> None:
    """413 when a reply cannot travel on this connection."""
    limit = reply_budget(max_payload)
    if max_payload and len(data) > limit:
        raise PayloadTooLarge(
            f"the reply on {subject} is {len(data):,} bytes, more than this connection's "
            f"max_payload of {max_payload:,} bytes allows: ask for less (a smaller limit, or "
            "page through the results), or raise max_payload on the NATS server",
            size=len(data), max_payload=max_payload)


class _Route:
    """What serving one endpoint needs, looked up once (every request uses it)."""

    __slots__ = ("decode", "ep", "metrics", "spec")

    def __init__(self, spec: ServiceSpec, ep: Endpoint, metrics: EndpointMetrics) -> None:
        self.spec, self.ep, self.metrics = spec, ep, metrics
        self.decode = make_decoder(spec.request_type)


class Dispatcher:
    """Serves one actor's request endpoints on behalf of its cell."""

    def __init__(self, cell: CellView) -> None:
        self.cell = cell
        self.log = cell.log
        self._wanted_at: float | None = None
        self.beats = Heartbeats(cell.bus.nc, cell.node)
        self.waiting = 0  # requests waiting for a slot

    # --- the gate ---------------------------------------------------------------------------
    async def await_serving(self) -> None:
        """Return when requests may run; wait (bounded by `request_wait_s`) while the actor
        starts, restarts or is paused; raise `Unavailable` when it will not serve."""
        cell = self.cell
        wait = cell.config.request_wait_s
        deadline = time.monotonic() + wait
        while not cell.lifecycle.serves:
            if not cell.lifecycle.waits:
                state = cell.lifecycle.state
                if state is State.FAILED:
                    raise Unavailable(f"{cell.name} failed: {cell.last_error}",
                                      state=state.value, retry_elsewhere=True)
                raise Unavailable(f"{cell.name} is shutting down", state=state.value,
                                  retry_elsewhere=True)
            if cell.lifecycle.state is State.PAUSED:
                await self.announce_wanted()
            left = deadline - time.monotonic()
            if left <= 0:
                raise Unavailable(f"{cell.name} is {cell.lifecycle.state.value} "
                                  f"(waited {wait:g}s)", state=cell.lifecycle.state.value)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(cell.ready.wait(), min(left, WANTED_REPEAT_S))

    def reset_wanted(self) -> None:
        self._wanted_at = None

    async def announce_wanted(self) -> None:
        """Say on `osiris.runtime.wanted` that requests wait for this paused actor (once per
        pause, again every WANTED_REPEAT_S while they wait): whoever paused it may resume it."""
        now = time.monotonic()
        if self._wanted_at is not None and now - self._wanted_at < WANTED_REPEAT_S:
            return
        self._wanted_at = now
        cell = self.cell
        evt = ActorWanted(actor=cell.name, node=cell.node,
                          waiting=cell.in_flight - cell.active, ts=time.time())
        with contextlib.suppress(Exception):  # the wait itself stays bounded either way
            await cell.bus.publish(ACTOR_WANTED, evt)

    # --- requests ---------------------------------------------------------------------------
    def callback(self, spec: ServiceSpec, ep: Endpoint) -> Callable[[Msg], Coroutine[Any, Any, None]]:
        """The subscription callback of one endpoint: each request starts at once and
        becomes a task only if it suspends (`start_eagerly`; so a watched request is heard
        from while it waits), at most `max_concurrency` of them running; past
        `PENDING_LIMIT` waiting, a request is refused (503) at once."""
        route = _Route(spec, ep, self.cell.metrics.endpoint(spec.endpoint))
        loop = asyncio.get_running_loop()
        tasks = self.cell.tasks

        async def callback(msg: Msg) -> None:
            if msg.headers and self.beats.serving(msg):
                # re-sent while its first run is still here: that run answers the same reply
                await self.beats.notice(msg.reply)
                self.log.info("%s: request %s on %s was re-sent while still being served "
                              "here; the first run answers", self.cell.name,
                              msg.headers.get(REQUEST_ID_HEADER), msg.subject)
                return
            if self.waiting >= PENDING_LIMIT:
                await respond_error(self.cell.bus.nc, msg, Unavailable(
                    f"{self.cell.name} is overloaded: {self.waiting} requests wait",
                    retry_elsewhere=True))
                self.cell.metrics.refused(spec.endpoint, 503)
                return
            # watched from here, before it first suspends: a re-send read right behind it
            # (both waited in the socket while the loop was blocked) finds it served
            watched = self.beats.watch(msg)
            try:
                task = start_eagerly(loop, self.serve(route, msg))
            except Exception:  # noqa: BLE001 - serve answers its own errors; never the sub's
                self.log.exception("%s: request on %s failed outside its handler",
                                   self.cell.name, msg.subject)
                task = None
            if task is None:  # answered without suspending: no task, no loop trip
                if watched:
                    self.beats.unwatch(msg)
                return
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            if watched:
                task.add_done_callback(lambda _: self.beats.unwatch(msg))

        return callback

    async def serve(self, route: _Route, msg: Msg) -> None:
        arrived = perf_counter_ns()
        slots = self.cell.slots
        if not slots.take():
            self.waiting += 1
            try:
                await slots.acquire()
            except asyncio.CancelledError:  # cut off at shutdown while it waited
                await respond_error(self.cell.bus.nc, msg, cut_off(self.cell.name))
                raise
            finally:
                self.waiting -= 1
        try:
            if tracing.ON:
                await self._serve_traced(route, msg, arrived)
            else:
                await self._serve(route, msg, arrived)
        finally:
            slots.release()

    async def _serve_traced(self, route: _Route, msg: Msg, arrived: int) -> None:
        """`_serve` inside the request's span (a child of the caller's), started when the
        request arrived: its queue wait, service time, tokens and outcome."""
        cell = self.cell
        start_ns = time.time_ns() - (time.perf_counter_ns() - arrived)
        span = tracing.processing(route.spec.subject, msg.headers, actor=cell.name, node=cell.node,
                                  start_ns=start_ns)
        served = _Served()
        try:
            await self._serve(route, msg, arrived, served)
        finally:
            err = served.error
            span.end(err.code if err else None, err.message if err else "",
                     queue_wait_s=served.queue_wait_ns / 1e9,
                     service_s=served.service_ns / 1e9, usage=served.usage)

    async def _serve(self, route: _Route, msg: Msg, arrived: int,
                     served: _Served | None = None) -> None:
        # every request passes here: plain attributes and integer nanoseconds on the way
        spec = route.spec
        cell = self.cell
        nc = cell.bus.nc
        error: ServiceError | None = None
        cell.in_flight += 1
        used = usage.enter()  # no reset: this request runs in a context of its own
        start = perf_counter_ns()
        try:
            if not cell.lifecycle.serves:
                await self.await_serving()
                start = perf_counter_ns()
            try:
                req = route.decode(msg.data)
            except (msgspec.ValidationError, msgspec.DecodeError) as e:
                raise bad_request(spec.subject, e) from None
            fn = getattr(cell.actor, spec.attr)
            cell.begin_activity()
            try:
                if spec.wants_context:
                    result = await fn(req, RequestContext(msg.subject, msg.headers or {},
                                                          msg.reply, cell.bus))
                else:
                    result = await fn(req)
            finally:
                cell.end_activity()
            if msg.reply:
                data = encode(result)
                max_payload = nc.max_payload
                if max_payload and len(data) > max_payload - REPLY_HEADROOM:
                    check_size(spec.subject, data, max_payload)
                await nc.publish(msg.reply, data)
        except ServiceError as e:
            error = e
            if e.code < 500:
                self.log.warning("%s: bad request on %s (%d bytes): %d %s", cell.name,
                                 msg.subject, len(msg.data), e.code, e.message)
        except ActorFatal as e:
            error = ServiceError(f"{cell.name} failed and restarts: {e}")
            self.log.exception("%s: handler %s raised ActorFatal", cell.name, spec.attr)
            cell.crash(e)  # before replying: the caller's next request waits for the restart
        except asyncio.CancelledError:
            error = cut_off(cell.name)
            await respond_error(nc, msg, error)
            raise
        except Exception as e:  # noqa: BLE001 - one request's failure, not the actor's
            error = ServiceError(f"{cell.name}: {spec.attr} failed: {type(e).__name__}: {e}")
            self.log.exception("%s: request on %s failed (%d bytes; the actor keeps running)",
                               cell.name, msg.subject, len(msg.data))
        finally:
            end = perf_counter_ns()
            cell.in_flight -= 1
            cell.handled += 1
            cell.last_used = time.time()
            if error is None:
                code = 200
                route.ep.record(end - start, None)
            else:
                code = error.code
                cell.errors += 1
                if code >= 500:
                    cell.last_error = error.message
                route.ep.record(end - start, error.message, code)
            route.metrics.served(code, end - start, start - arrived)
            if used.prompt_tokens or used.completion_tokens:
                cell.metrics.tokens(used)
            if served is not None:
                served.error, served.usage = error, used
                served.queue_wait_ns = start - arrived
                served.service_ns = end - start
        if error is not None:
            await respond_error(nc, msg, error)


class _Served:
    """What `_serve` tells the traced path about one request."""

    __slots__ = ("error", "queue_wait_ns", "service_ns", "usage")

    def __init__(self) -> None:
        self.error: ServiceError | None = None
        self.usage: usage.Usage | None = None
        self.queue_wait_ns = self.service_ns = 0
