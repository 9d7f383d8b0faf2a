"""Event handling for a cell: core subscriptions (declared or made at run time) and the
JetStream durable consumer with its dead-letter policy.

A failing event handler is logged and counted; it never restarts the actor (only
`ActorFatal` does). A durable event is acked after its handler returns; one that fails is
redelivered with a growing delay, and after `max_deliver` deliveries (or at once when it
cannot be decoded) it is published to `osiris.deadletter` with its subject, sequence,
payload and error, then acked: no consumer ever stalls behind one message.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import inspect
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from osiris_core.actor import EventMeta, EventSpec
from osiris_core.errors import ActorFatal, ServiceError
from osiris_core.nats.bus import MSG_ID_HEADER, REPLAY_OF_HEADER
from osiris_core.observability import tracing
from osiris_core.protocol import DeadLetter
from osiris_core.runtime.dispatch import bad_request, make_decoder
from osiris_core.subjects import DEADLETTER

if TYPE_CHECKING:
    from osiris_core.runtime.host import CellView

__all__ = ["EventRunner", "dead_letter_of"]

FETCH_TIMEOUT_S = 1.0
FETCH_RETRY_S = 0.1      # after a failed fetch (not a timeout), doubling up to
FETCH_RETRY_MAX_S = 2.0
LAG_POLL_S = 10.0
"""How often a durable consumer asks the server for its lag (consumer info) between
fetches: a handler that is stuck fetches nothing, and its lag must still show."""
REDELIVERY_DELAYS_S = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0)


@dataclass(frozen=True)
class Handler:
    """A handler bound to a subject: declared (`@on_event`, looked up on the current actor
    instance) or made at run time by `Actor.subscribe` (a bound method of one instance)."""

    spec: EventSpec
    handler: Callable[..., Awaitable[Any]] | None = None


def dynamic_spec(subject: str, handler: Callable[..., Any], queue: bool,
                 event_type: Any) -> EventSpec:
    wants_meta = len(inspect.signature(handler).parameters) > 1
    return EventSpec(subject, getattr(handler, "__name__", "handler"),
                     Any if event_type is None else event_type, False, None, 1, queue,
                     wants_meta)


def dead_letter_of(msg: Msg, *, consumer: str, actor: str, node: str, error: str) -> DeadLetter:
    md = msg.metadata
    try:
        payload, enc = msg.data.decode(), "utf-8"
    except UnicodeDecodeError:
        payload, enc = base64.b64encode(msg.data).decode(), "base64"
    headers = dict(msg.headers or {})
    return DeadLetter(
        id=f"{md.stream}:{md.sequence.stream}:{consumer}", subject=msg.subject,
        stream=md.stream, stream_seq=md.sequence.stream, consumer=consumer, actor=actor,
        node=node, error=error[:4000], attempts=md.num_delivered, payload=payload,
        payload_encoding=enc,  # type: ignore[arg-type]
        headers=headers, msg_id=headers.get(MSG_ID_HEADER, ""), ts=time.time(),
    )


class EventRunner:
    """Runs one cell's event handlers."""

    def __init__(self, cell: CellView) -> None:
        self.cell = cell
        self.log = cell.log
        self.dead_letters = 0
        self._subscriptions: dict[str, str] = {}  # durable consumer → its subject (pattern)

    # --- the gate ---------------------------------------------------------------------------
    async def ready(self) -> bool:
        """Wait (unbounded: events queue up meanwhile) until the actor serves; False when it
        will not any more (stopping, failed)."""
        lc = self.cell.lifecycle
        while not lc.serves:
            if not lc.waits:
                return False
            await self.cell.ready.wait()
        return True

    # --- handlers ---------------------------------------------------------------------------
    async def run(self, sub: Handler, items: list[tuple[Any, EventMeta]]) -> str | None:
        """Call the handler; None on success, else the error (logged and counted)."""
        if tracing.ON:
            spans = tracing.consumer_spans([(m.subject, m.headers) for _, m in items],
                                           actor=self.cell.name, node=self.cell.node,
                                           durable=sub.spec.durable)
            error = None
            try:
                error = await self._run(sub, items)
            finally:
                spans.end(error)
            return error
        return await self._run(sub, items)

    async def _run(self, sub: Handler, items: list[tuple[Any, EventMeta]]) -> str | None:
        cell = self.cell
        spec = sub.spec
        fn = sub.handler or getattr(cell.actor, spec.attr)
        began, ok = 0.0, False
        try:
            async with cell.slots, cell.activity():
                began = time.perf_counter()
                if spec.batch > 1:
                    await fn(items)
                else:
                    evt, meta = items[0]
                    await (fn(evt, meta) if spec.wants_meta else fn(evt))
            ok = True
            return None
        except ServiceError as e:
            self.log.warning("%s: event handler %s refused %s: %s",
                             cell.name, spec.attr, items[0][1].subject, e.message)
            return f"{e.code}: {e.message}"
        except ActorFatal as e:
            cell.errors += 1
            self.log.exception("%s: event handler %s raised ActorFatal", cell.name, spec.attr)
            cell.crash(e)
            return f"ActorFatal: {e}"
        except Exception as e:  # noqa: BLE001 - the event's failure, not the actor's
            cell.errors += 1
            cell.last_error = f"{type(e).__name__}: {e}"
            self.log.exception("%s: event handler %s failed on %s", cell.name, spec.attr,
                               items[0][1].subject)
            return f"{type(e).__name__}: {e}"
        finally:
            cell.handled += 1
            cell.last_used = time.time()
            if began:  # the handler ran (not cut off while it waited for a slot)
                cell.metrics.event(spec.subject, ok, len(items), time.perf_counter() - began)

    def callback(self, sub: Handler) -> Callable[[Msg], Coroutine[Any, Any, None]]:
        """Core subscription callback: sequential per subscription (keeps order)."""
        decode = make_decoder(sub.spec.event_type)

        async def callback(msg: Msg) -> None:
            if not await self.ready():
                return
            try:
                evt = decode(msg.data)
            except (msgspec.ValidationError, msgspec.DecodeError) as e:
                self.log.warning("%s: dropping malformed event on %s (%d bytes): %s",
                                 self.cell.name, msg.subject, len(msg.data),
                                 bad_request(msg.subject, e).message)
                return
            headers = msg.headers or {}
            await self.run(sub, [(evt, EventMeta(msg.subject, headers.get(MSG_ID_HEADER, ""),
                                                 headers))])

        return callback

    # --- durable ----------------------------------------------------------------------------
    async def consume(self, spec: EventSpec) -> None:
        """Durable pull consumer: fetch, handle, ack after success, dead-letter poison."""
        cell = self.cell
        durable = f"{cell.name}_{spec.consumer}"
        self._subscriptions[durable] = spec.subject
        max_deliver = max(cell.config.max_deliver, 1)
        cfg = ConsumerConfig(
            durable_name=durable, ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL, ack_wait=cell.config.ack_wait_s,
            # one delivery of slack: the last one that fails is dead-lettered by us
            max_deliver=max_deliver + 1, max_ack_pending=max(1000, spec.batch * 4),
            filter_subject=spec.subject,
        )
        decode = make_decoder(spec.event_type)
        try:
            assert spec.stream is not None
            try:
                await cell.bus.js.add_consumer(spec.stream, cfg)  # creates or updates
            except Exception as e:  # noqa: BLE001 - an older server: bind what is there
                self.log.warning("%s: could not create/update consumer %s: %s",
                                 cell.name, durable, e)
            psub = await cell.bus.js.pull_subscribe(spec.subject, durable=durable,
                                                    stream=spec.stream, config=cfg)
        except Exception as e:  # noqa: BLE001
            self.log.exception("%s: cannot bind durable consumer %s", cell.name, durable)
            cell.crash(e)
            return
        sub = Handler(spec)
        lag = asyncio.ensure_future(self._poll_lag(psub, durable))
        # Batch handlers overlap the next fetch with the current write (one batch ahead at
        # most): a LanceDB write of 256 rows takes ~10 ms in a thread, time in which the
        # loop decodes the next batch. Single-event handlers keep strict fetch-handle order.
        handling: asyncio.Task[None] | None = None
        backoff = FETCH_RETRY_S
        try:
            while cell.lifecycle.consuming:
                if not cell.lifecycle.serves:
                    if handling is not None:
                        await handling
                        handling = None
                    if not await self.ready() or not cell.lifecycle.consuming:
                        return
                try:
                    msgs = await psub.fetch(max(spec.batch, 64), timeout=FETCH_TIMEOUT_S)
                    backoff = FETCH_RETRY_S
                except (TimeoutError, NatsTimeout):
                    cell.metrics.consumer_pending(durable, 0)  # nothing left to deliver
                    continue
                except Exception as e:  # noqa: BLE001 - a leader election, a reconnect: again
                    self.log.warning("%s: fetch from %s failed (%s: %s): again in %.1fs",
                                     cell.name, durable, type(e).__name__, e, backoff)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, FETCH_RETRY_MAX_S)
                    continue
                if handling is not None:
                    await handling
                    handling = None
                work = self._handle(sub, decode, msgs, durable, max_deliver)
                if spec.batch > 1:
                    handling = asyncio.ensure_future(work)
                else:
                    await work
        finally:
            lag.cancel()
            if handling is not None:
                with contextlib.suppress(Exception):
                    await handling
            with contextlib.suppress(Exception):
                await psub.unsubscribe()

    async def _poll_lag(self, psub: Any, consumer: str) -> None:
        """Every `LAG_POLL_S`, the consumer's lag as the server has it (`num_pending`), so
        the gauge moves while a handler is stuck as well as with each fetch."""
        while True:
            await asyncio.sleep(LAG_POLL_S)
            try:
                info = await psub.consumer_info()
            except Exception as e:  # noqa: BLE001 - a reconnect, a leader election: next time
                self.log.debug("%s: consumer info of %s: %s", self.cell.name, consumer, e)
                continue
            self.cell.metrics.consumer_pending(consumer, int(info.num_pending or 0))

    async def _handle(self, sub: Handler, decode: Callable[[bytes], Any], msgs: list[Msg],
                      consumer: str, max_deliver: int) -> None:
        spec = sub.spec
        if msgs:  # the consumer's lag as the server counted it when it sent the last one
            self.cell.metrics.consumer_pending(consumer, msgs[-1].metadata.num_pending)
        good: list[tuple[Msg, Any, EventMeta]] = []
        for msg in msgs:
            md = msg.metadata
            headers = msg.headers or {}
            msg_id = (headers.get(REPLAY_OF_HEADER) or headers.get(MSG_ID_HEADER)
                      or f"{md.stream}:{md.sequence.stream}")
            meta = EventMeta(msg.subject, msg_id, headers, md.sequence.stream, md.num_delivered)
            try:
                good.append((msg, decode(msg.data), meta))
            except (msgspec.ValidationError, msgspec.DecodeError) as e:
                problem = bad_request(msg.subject, e).message
                self.log.error("%s: malformed durable event %s seq %s: %s", self.cell.name,
                               msg.subject, md.sequence.stream, problem)
                await self._dead_letter(msg, consumer, problem)
        for i in range(0, len(good), spec.batch):
            # fetched just before a pause: wait for the resume (not for ack_wait); stopping:
            # hand the rest back at once, for another replica or the next start
            if not self.cell.lifecycle.serves and not await self.ready():
                for msg, _, _ in good[i:]:
                    with contextlib.suppress(Exception):
                        await msg.nak()
                return
            chunk = good[i : i + spec.batch]
            error = await self.run(sub, [(evt, meta) for _, evt, meta in chunk])
            if error is None:
                for msg, _, _ in chunk:
                    await _ack(msg)
                continue
            if len(chunk) == 1:
                await self._failed(chunk[0][0], consumer, max_deliver, error)
                continue
            # a batch failed: find the poison by handling each event alone (handlers are
            # idempotent, so the ones that did land before the failure land again harmlessly)
            for msg, evt, meta in chunk:
                one = await self.run(sub, [(evt, meta)])
                if one is None:
                    await _ack(msg)
                else:
                    await self._failed(msg, consumer, max_deliver, one)

    async def _failed(self, msg: Msg, consumer: str, max_deliver: int, error: str) -> None:
        attempts = msg.metadata.num_delivered
        if attempts >= max_deliver:
            await self._dead_letter(msg, consumer, error)
        else:
            delay = REDELIVERY_DELAYS_S[min(attempts - 1, len(REDELIVERY_DELAYS_S) - 1)]
            with contextlib.suppress(Exception):
                await msg.nak(delay=delay)

    async def _dead_letter(self, msg: Msg, consumer: str, error: str) -> None:
        """Move `msg` aside: publish it on `osiris.deadletter`, then ack it. When the dead
        letter cannot be published it is left unacked (redelivered: nothing is lost)."""
        cell = self.cell
        if msg.subject == DEADLETTER.name:  # never dead-letter a dead letter: it stays in
            self.log.error("%s: giving up on dead letter seq %s: %s",  # its stream
                           cell.name, msg.metadata.sequence.stream, error)
            with contextlib.suppress(Exception):
                await msg.term()
            return
        letter = dead_letter_of(msg, consumer=consumer, actor=cell.name, node=cell.node,
                                error=error)
        try:
            await cell.bus.publish(DEADLETTER, letter, msg_id=letter.id)
        except Exception as e:  # noqa: BLE001
            self.log.error("%s: could not dead-letter %s seq %s (%s); it stays pending",
                           cell.name, msg.subject, letter.stream_seq, e)
            with contextlib.suppress(Exception):
                await msg.nak(delay=REDELIVERY_DELAYS_S[-1])
            return
        await msg.ack()
        self.dead_letters += 1
        # by subscription, like the events: a wildcard one is one series, not one per subject
        cell.metrics.dead_letter(self._subscriptions.get(consumer, msg.subject))
        self.log.error("%s: dead-lettered %s seq %d after %d deliveries: %s", cell.name,
                       msg.subject, letter.stream_seq, letter.attempts, error)


async def _ack(msg: Msg) -> None:
    """Ack; one that cannot be sent (the connection is reconnecting) leaves the event to be
    redelivered after ack_wait, which idempotent handlers take in their stride."""
    with contextlib.suppress(Exception):
        await msg.ack()
