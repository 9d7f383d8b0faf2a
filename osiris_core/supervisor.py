"""ActorCell: runs one actor — its micro service, subscriptions, consumers and restarts.

The cell owns the lifecycle (`TRANSITIONS`), bounds concurrency with a semaphore (excess
requests wait in the subscription's bounded buffer: backpressure), gates requests while the
actor is starting or paused, restarts a crashed actor with exponential backoff and jitter,
marks it failed after too many crashes in a window, and drains on stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import msgspec
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from .actor import (
    TRANSITIONS,
    Actor,
    ActorContext,
    EventMeta,
    EventSpec,
    RequestContext,
    ServiceSpec,
    State,
)
from .bus import MSG_ID_HEADER, Bus, encode
from .config import PluginConfig, validation_error_field
from .protocol import ActorStatus, ActorWanted, ControlReply, ControlRequest, ErrorReply
from .errors import ERROR_CODE_HEADER, ERROR_HEADER, BadRequest, ServiceError, Unavailable
from .micro import Endpoint, MicroService
from .subjects import ACTOR_WANTED, Catalogue, control

__all__ = ["ActorCell"]

log = logging.getLogger("osiris.supervisor")
_error_encoder = msgspec.json.Encoder()
FETCH_TIMEOUT_S = 1.0
WANTED_REPEAT_S = 1.0  # a paused actor with waiting requests is announced again this often


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
    if isinstance(err, msgspec.ValidationError):
        field, problem = validation_error_field(err)
        where = f"field {field!r}: " if field else ""
        return BadRequest(f"invalid request on {subject}: {where}{problem}", field=field)
    return BadRequest(f"invalid JSON payload on {subject}: {err}")


class ActorCell:
    """Supervises one actor class inside a runtime."""

    def __init__(
        self,
        cls: type[Actor[Any]],
        *,
        plugin: str,
        config: PluginConfig,
        bus: Bus,
        catalogue: Catalogue,
        data_dir: Path,
        node: str,
    ) -> None:
        self.cls = cls
        self.name = cls.name
        self.plugin = plugin
        self.config = config
        self.bus = bus
        self.data_dir = data_dir
        self.node = node
        self.services, self.events = cls.handler_specs(catalogue.get)
        self.state = State.STOPPED
        self.actor: Actor[Any] | None = None
        self.ready = asyncio.Event()
        self.idle = asyncio.Event()
        self.idle.set()
        self.slots = asyncio.Semaphore(config.max_concurrency)
        self.tasks: set[asyncio.Task[Any]] = set()
        self.background: set[asyncio.Task[Any]] = set()
        self.in_flight = 0
        self.active = 0
        self.handled = 0
        self.errors = 0
        self.restarts = 0
        self.last_error: str | None = None
        self.last_used: float | None = None
        self.crash_times: deque[float] = deque()
        self.micro: MicroService | None = None
        self.event_subs: list[Subscription] = []
        self.consumers: list[asyncio.Task[Any]] = []
        self._subscribed = False
        self._consuming = False
        self._paused_at_stop = False
        self._failing = False
        self._restart_task: asyncio.Task[Any] | None = None
        self._wanted_at: float | None = None
        self._lock = asyncio.Lock()
        self.log = logging.getLogger(f"osiris.{self.name}")

    # --- state ------------------------------------------------------------------------------
    def _set(self, new: State) -> None:
        if new is not self.state and new not in TRANSITIONS[self.state]:
            raise RuntimeError(f"{self.name}: illegal transition {self.state.value} → {new.value}")
        if new is not self.state:
            self.log.info("%s: %s → %s", self.name, self.state.value, new.value)
        self.state = new
        if new in (State.STARTING, State.PAUSED):
            self.ready.clear()
        else:
            self.ready.set()

    def status(self) -> ActorStatus:
        facts: dict[str, Any] = {}
        if self.actor is not None:
            try:
                facts = self.actor.facts()
            except Exception as e:  # noqa: BLE001 - status must always answer
                facts = {"facts_error": repr(e)}
        return ActorStatus(
            name=self.name, plugin=self.plugin, state=self.state.value, restarts=self.restarts,
            in_flight=self.in_flight, handled=self.handled, errors=self.errors,
            last_error=self.last_error, last_used=self.last_used, facts=facts,
        )

    # --- start / restart --------------------------------------------------------------------
    async def start(self) -> None:
        """Start the micro service and the actor; returns once running or failed."""
        self._set(State.STARTING)
        self.micro = MicroService(
            self.bus.nc, name=self.name, version=self.cls.version,
            description=self.cls.description, metadata={"plugin": self.plugin, "node": self.node},
        )
        await self.micro.start()
        await self.micro.add_endpoint(Endpoint(
            "control", control(self.name), self.name, self._on_control_msg))
        await self.bus.nc.flush()
        await self._boot()

    def _new_actor(self) -> Actor[Any]:
        ctx: ActorContext[Any] = ActorContext(
            name=self.name, plugin=self.plugin, config=self.config, bus=self.bus,
            data_dir=self.data_dir, node=self.node, spawn=self._spawn,
        )
        return self.cls(ctx)

    async def _boot(self) -> None:
        """on_start with crash accounting; subscribe once the first start succeeded."""
        while True:
            self.actor = self._new_actor()
            try:
                await self.actor.on_start()
                break
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001
                self.log.exception("%s: on_start failed", self.name)
                if not self._note_crash(e):
                    await self._fail()
                    return
                await asyncio.sleep(self._backoff())
        if not self._subscribed:
            await self._subscribe()
        self._set(State.RUNNING)

    def _note_crash(self, exc: BaseException) -> bool:
        """Record a crash; False when the restart intensity is exceeded."""
        now = time.monotonic()
        self.last_error = f"{type(exc).__name__}: {exc}"
        self.crash_times.append(now)
        while self.crash_times and now - self.crash_times[0] > self.config.restart_window_s:
            self.crash_times.popleft()
        self.restarts += 1
        return len(self.crash_times) <= self.config.max_restarts

    def _backoff(self) -> float:
        n = max(len(self.crash_times) - 1, 0)
        delay = min(self.config.backoff_max_s, self.config.backoff_initial_s * (1 << n))
        return delay / 2 + random.random() * delay / 2  # equal jitter

    def crash(self, exc: BaseException) -> None:
        """A handler or background task raised: close the gate now, restart with backoff.

        Synchronous on purpose: the very next request already waits for the new instance.
        Crashes of the old instance while a restart is under way are not counted twice.
        """
        if self.state not in (State.RUNNING, State.PAUSED):
            return
        ok = self._note_crash(exc)
        self._set(State.STARTING)
        self._restart_task = asyncio.get_running_loop().create_task(self._restart(ok))

    async def _restart(self, within_limit: bool) -> None:
        async with self._lock:
            await self._dispose_actor()
            if not within_limit:
                self.log.error("%s: %d crashes within %.0fs: marking failed (last: %s)",
                               self.name, len(self.crash_times), self.config.restart_window_s,
                               self.last_error)
                await self._fail()
                return
            delay = self._backoff()
            self.log.warning("%s crashed (%s); restart #%d in %.2fs",
                             self.name, self.last_error, self.restarts, delay)
            await asyncio.sleep(delay)
            await self._boot()

    async def _dispose_actor(self) -> None:
        """on_stop first (it may end its own tasks gracefully), then cancel what is left."""
        if self.actor is not None:
            try:
                await self.actor.on_stop()
            except Exception:  # noqa: BLE001
                self.log.exception("%s: on_stop failed", self.name)
        left = [t for t in self.background if not t.done()]
        for t in left:
            t.cancel()
        if left:
            await asyncio.wait(left, timeout=5.0)
        self.background.clear()

    async def _fail(self) -> None:
        """Leave the queue groups first (requests already delivered get a 503), then say so."""
        self._failing = True
        self.ready.set()  # waiters wake up and get "failed"
        await self._unsubscribe()
        self._set(State.FAILED)

    # --- subscriptions ----------------------------------------------------------------------
    async def _subscribe(self) -> None:
        assert self.micro is not None
        for spec in self.services:
            ep = Endpoint(spec.endpoint, spec.subject, self.name, lambda m: None)  # type: ignore[arg-type,return-value]
            ep.callback = self._request_callback(spec, ep)
            await self.micro.add_endpoint(ep)
        self._consuming = True
        for ev in self.events:
            if ev.durable:
                self.consumers.append(asyncio.get_running_loop().create_task(self._consume(ev)))
            else:
                sub = await self.bus.nc.subscribe(
                    ev.subject, queue=self.name if ev.queue else "", cb=self._event_callback(ev),
                    pending_msgs_limit=65_536,
                )
                self.event_subs.append(sub)
        self._subscribed = True
        await self.bus.nc.flush()  # the server knows our interest before we say "running"

    async def _unsubscribe(self) -> None:
        """Leave queue groups and stop consuming (used on failure; control stays up)."""
        self._consuming = False
        subs: list[Subscription] = []
        if self.micro is not None:
            for ep in self.micro.endpoints:
                if ep.name != "control" and ep.sub is not None:
                    subs.append(ep.sub)
                    ep.sub = None
            self.micro.endpoints = [e for e in self.micro.endpoints if e.name == "control"]
        subs += self.event_subs
        self.event_subs.clear()
        for sub in subs:
            with contextlib.suppress(Exception):
                await sub.drain()  # type: ignore[no-untyped-call]
        with contextlib.suppress(Exception):
            await self.bus.nc.flush()
        self._subscribed = False

    # --- requests ---------------------------------------------------------------------------
    def _request_callback(self, spec: ServiceSpec, ep: Endpoint) -> Callable[[Msg], Coroutine[Any, Any, None]]:
        decode = make_decoder(spec.request_type)
        loop = asyncio.get_running_loop()
        slots, tasks = self.slots, self.tasks

        def done(task: asyncio.Task[Any]) -> None:
            tasks.discard(task)
            slots.release()

        async def callback(msg: Msg) -> None:
            await slots.acquire()
            task = loop.create_task(self._serve(spec, ep, decode, msg))
            tasks.add(task)
            task.add_done_callback(done)

        return callback

    async def _await_running(self) -> None:
        state = self.state
        if state is State.RUNNING or (state is State.STOPPING and not self._paused_at_stop):
            return
        if self._failing:
            raise Unavailable(f"{self.name} failed: {self.last_error}", state="failed")
        if state in (State.STARTING, State.PAUSED):
            wait = self.config.request_wait_s
            deadline = time.monotonic() + wait
            while True:
                if self.state is State.PAUSED:
                    await self._announce_wanted()
                left = deadline - time.monotonic()
                try:
                    await asyncio.wait_for(self.ready.wait(), max(min(left, WANTED_REPEAT_S), 0))
                    break
                except TimeoutError:
                    if left <= WANTED_REPEAT_S:
                        raise Unavailable(f"{self.name} is {self.state.value} (waited {wait:g}s)",
                                          state=self.state.value) from None
            return await self._await_running()
        if state is State.FAILED:
            raise Unavailable(f"{self.name} failed: {self.last_error}", state="failed")
        raise Unavailable(f"{self.name} is shutting down", state=self.state.value)

    async def _announce_wanted(self) -> None:
        """Say on `osiris.runtime.wanted` that requests wait for this paused actor (once per
        pause, again every WANTED_REPEAT_S while they wait): the gpu supervisor resumes it."""
        now = time.monotonic()
        if self._wanted_at is not None and now - self._wanted_at < WANTED_REPEAT_S:
            return
        self._wanted_at = now
        evt = ActorWanted(actor=self.name, node=self.node,
                          waiting=self.in_flight - self.active, ts=time.time())
        with contextlib.suppress(Exception):  # the wait itself stays bounded either way
            await self.bus.publish(ACTOR_WANTED, evt)

    async def _serve(
        self, spec: ServiceSpec, ep: Endpoint, decode: Callable[[bytes], Any], msg: Msg
    ) -> None:
        start = time.perf_counter_ns()
        error: str | None = None
        self.in_flight += 1
        try:
            if self.state is not State.RUNNING:
                await self._await_running()
            try:
                req = decode(msg.data)
            except (msgspec.ValidationError, msgspec.DecodeError) as e:
                raise bad_request(spec.subject, e) from None
            fn = getattr(self.actor, spec.attr)
            self.active += 1
            self.idle.clear()
            try:
                if spec.wants_context:
                    ctx = RequestContext(msg.subject, msg.headers or {}, msg.reply, self.bus)
                    result = await fn(req, ctx)
                else:
                    result = await fn(req)
            finally:
                self.active -= 1
                if not self.active:
                    self.idle.set()
            if msg.reply:
                await self.bus.nc.publish(msg.reply, encode(result))
        except ServiceError as e:
            error = e.message
            if e.code == 400:
                self.log.warning("%s: bad request on %s (%d bytes): %s",
                                 self.name, msg.subject, len(msg.data), e.message)
            await self._respond_error(msg, e)
        except asyncio.CancelledError:
            await self._respond_error(msg, Unavailable(f"{self.name} stopped before replying"))
            raise
        except Exception as e:  # noqa: BLE001 - a crash: answer, then restart
            error = f"{type(e).__name__}: {e}"
            self.errors += 1
            self.log.exception("%s: handler %s crashed", self.name, spec.attr)
            self.crash(e)  # before replying: the caller's next request waits for the restart
            await self._respond_error(msg, ServiceError(f"{self.name} crashed: {error}"))
        finally:
            self.in_flight -= 1
            self.handled += 1
            self.last_used = time.time()
            ep.record(time.perf_counter_ns() - start, error)

    async def _respond_error(self, msg: Msg, err: ServiceError) -> None:
        if not msg.reply:
            return
        body = ErrorReply(error=err.message, code=err.code, field=err.field, detail=err.detail)
        headers = {ERROR_HEADER: err.message.replace("\r", " ").replace("\n", " ")[:1000],
                   ERROR_CODE_HEADER: str(err.code)}
        with contextlib.suppress(Exception):
            await self.bus.nc.publish(msg.reply, _error_encoder.encode(body), headers=headers)

    # --- control ----------------------------------------------------------------------------
    async def _on_control_msg(self, msg: Msg) -> None:
        task = asyncio.get_running_loop().create_task(self._control(msg))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _control(self, msg: Msg) -> None:
        try:
            try:
                req = msgspec.json.decode(msg.data or b'{"op": "status"}', type=ControlRequest)
            except (msgspec.ValidationError, msgspec.DecodeError) as e:
                raise bad_request(control(self.name), e) from None
            result = await self.control(req.op, req.args)
            reply = ControlReply(ok=True, status=self.status(), result=result)
            if msg.reply:
                await self.bus.nc.publish(msg.reply, encode(reply))
        except ServiceError as e:
            await self._respond_error(msg, e)
        except Exception as e:  # noqa: BLE001
            self.log.exception("%s: control op failed", self.name)
            await self._respond_error(msg, ServiceError(f"control failed: {e!r}"))

    async def control(self, op: str, args: dict[str, Any]) -> dict[str, Any]:
        """Run a control op: status, pause, resume, restart, or the actor's own ops."""
        if op == "status":
            return {}
        if op == "pause":
            return await self.pause(force=bool(args.get("force", False)),
                                    timeout=float(args.get("timeout", 30.0)))
        if op == "resume":
            return await self.resume()
        if op == "restart":
            return await self.manual_restart()
        if self.actor is None or self.state not in (State.RUNNING, State.PAUSED):
            raise Unavailable(f"{self.name} is {self.state.value}")
        return await self.actor.on_control(op, args)

    async def pause(self, *, force: bool = False, timeout: float = 30.0) -> dict[str, Any]:
        """Stop taking work, wait for in-flight handlers (unless `force`), call on_pause."""
        async with self._lock:
            if self.state is State.PAUSED:
                return {"already": True}
            if self.state is not State.RUNNING:
                raise Unavailable(f"cannot pause {self.name}: it is {self.state.value}")
            t0 = time.perf_counter()
            self._set(State.PAUSED)
            self._wanted_at = None
            if not force:
                try:
                    await asyncio.wait_for(self.idle.wait(), timeout)
                except TimeoutError:
                    self._set(State.RUNNING)
                    raise Unavailable(f"{self.name} is busy: {self.active} requests in flight",
                                      in_flight=self.active) from None
            assert self.actor is not None
            try:
                await self.actor.on_pause()
            except Exception as e:
                self._set(State.RUNNING)
                raise ServiceError(f"{self.name}: on_pause failed: {e!r}") from e
            return {"pause_s": time.perf_counter() - t0}

    async def resume(self) -> dict[str, Any]:
        async with self._lock:
            if self.state is State.RUNNING:
                return {"already": True}
            if self.state is not State.PAUSED:
                raise Unavailable(f"cannot resume {self.name}: it is {self.state.value}")
            t0 = time.perf_counter()
            assert self.actor is not None
            await self.actor.on_resume()
            self._set(State.RUNNING)
            return {"resume_s": time.perf_counter() - t0}

    async def manual_restart(self) -> dict[str, Any]:
        async with self._lock:
            if self.state in (State.STOPPING, State.STOPPED):
                raise Unavailable(f"{self.name} is {self.state.value}")
            was_failed = self.state is State.FAILED
            self._failing = False
            self._set(State.STARTING)
            if not was_failed:
                await self._dispose_actor()
            self.crash_times.clear()
            await self._boot()
            return {"state": self.state.value}

    # --- events -----------------------------------------------------------------------------
    def _event_callback(self, spec: EventSpec) -> Callable[[Msg], Coroutine[Any, Any, None]]:
        decode = make_decoder(spec.event_type)

        async def callback(msg: Msg) -> None:  # sequential per subscription: keeps order
            if not await self._event_ready():
                return
            try:
                evt = decode(msg.data)
            except (msgspec.ValidationError, msgspec.DecodeError) as e:
                self.log.warning("%s: dropping malformed event on %s: %s",
                                 self.name, msg.subject, bad_request(msg.subject, e).message)
                return
            meta = EventMeta(msg.subject, (msg.headers or {}).get(MSG_ID_HEADER, ""),
                             msg.headers or {})
            await self._run_event(spec, [(evt, meta)])

        return callback

    async def _event_ready(self) -> bool:
        """Wait (unbounded: events queue up meanwhile) until running; False when leaving."""
        while True:
            state = self.state
            if state is State.RUNNING or (state is State.STOPPING and not self._paused_at_stop):
                return True
            if self._failing or state in (State.FAILED, State.STOPPED, State.STOPPING):
                return False
            await self.ready.wait()

    async def _run_event(self, spec: EventSpec, items: list[tuple[Any, EventMeta]]) -> bool:
        """Call the handler; True on success. A crash restarts the actor."""
        fn = getattr(self.actor, spec.attr)
        self.in_flight += 1
        self.active += 1
        self.idle.clear()
        try:
            if spec.batch > 1:
                await fn(items)
            else:
                evt, meta = items[0]
                await (fn(evt, meta) if spec.wants_meta else fn(evt))
            return True
        except ServiceError as e:
            self.log.warning("%s: event handler %s refused %s: %s",
                             self.name, spec.attr, items[0][1].subject, e.message)
            return False
        except Exception as e:  # noqa: BLE001
            self.errors += 1
            self.log.exception("%s: event handler %s crashed", self.name, spec.attr)
            self.crash(e)
            return False
        finally:
            self.in_flight -= 1
            self.active -= 1
            self.handled += 1
            self.last_used = time.time()
            if not self.active:
                self.idle.set()

    async def _consume(self, spec: EventSpec) -> None:
        """Durable pull consumer: fetch, handle, ack after success; poison is terminated."""
        durable = f"{self.name}_{spec.consumer}"
        cfg = ConsumerConfig(
            durable_name=durable, ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL, ack_wait=getattr(self.config, "ack_wait_s", 30.0),
            max_deliver=-1, max_ack_pending=max(1000, spec.batch * 4),
            filter_subject=spec.subject,
        )
        decode = make_decoder(spec.event_type)
        try:
            psub = await self.bus.js.pull_subscribe(spec.subject, durable=durable,
                                                    stream=spec.stream, config=cfg)
        except Exception as e:  # noqa: BLE001
            self.log.exception("%s: cannot bind durable consumer %s", self.name, durable)
            self.crash(e)
            return
        # Batch handlers overlap the next fetch with the current write (one batch ahead at
        # most): a LanceDB write of 256 rows takes ~10 ms in a thread, time in which the
        # loop decodes the next batch. Single-event handlers keep strict fetch-handle order.
        handling: asyncio.Task[None] | None = None
        try:
            while self._consuming:
                if self.state is not State.RUNNING:
                    if handling is not None:
                        await handling
                        handling = None
                    if not await self._event_ready() or not self._consuming:
                        return
                try:
                    msgs = await psub.fetch(max(spec.batch, 64), timeout=FETCH_TIMEOUT_S)
                except (TimeoutError, NatsTimeout):
                    continue
                if handling is not None:
                    await handling
                    handling = None
                if spec.batch > 1:
                    handling = asyncio.ensure_future(self._handle_durable(spec, decode, msgs))
                else:
                    await self._handle_durable(spec, decode, msgs)
        finally:
            if handling is not None:
                with contextlib.suppress(Exception):
                    await handling
            with contextlib.suppress(Exception):
                await psub.unsubscribe()

    async def _handle_durable(
        self, spec: EventSpec, decode: Callable[[bytes], Any], msgs: list[Msg]
    ) -> None:
        good: list[tuple[Msg, Any, EventMeta]] = []
        for msg in msgs:
            md = msg.metadata
            headers = msg.headers or {}
            meta = EventMeta(msg.subject, headers.get(MSG_ID_HEADER) or f"{md.stream}:{md.sequence.stream}",
                             headers, md.sequence.stream, md.num_delivered)
            try:
                good.append((msg, decode(msg.data), meta))
            except (msgspec.ValidationError, msgspec.DecodeError) as e:
                self.log.error("%s: terminating malformed durable event %s seq %s (%s)",
                               self.name, msg.subject, md.sequence.stream,
                               bad_request(msg.subject, e).message)
                await msg.term()
        for i in range(0, len(good), spec.batch):
            chunk = good[i : i + spec.batch]
            ok = await self._run_event(spec, [(evt, meta) for _, evt, meta in chunk])
            if ok:
                for msg, _, _ in chunk:
                    await msg.ack()
            else:
                for msg, _, _ in good[i:]:
                    await msg.nak(delay=1.0)
                return

    # --- background tasks -------------------------------------------------------------------
    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=f"{self.name}:{name}")
        self.background.add(task)

        def done(t: asyncio.Task[Any]) -> None:
            self.background.discard(t)
            if not t.cancelled() and t.exception() is not None:
                exc = t.exception()
                assert exc is not None
                self.log.error("%s: background task %s crashed: %r", self.name, name, exc)
                self.crash(exc)

        task.add_done_callback(done)
        return task

    # --- stop -------------------------------------------------------------------------------
    async def stop(self, timeout: float = 30.0) -> None:
        """Drain: stop taking work, finish in-flight work (bounded), on_stop, leave."""
        if self._restart_task is not None and not self._restart_task.done():
            self._restart_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._restart_task
        if self.state is State.STOPPED:
            return
        was_failed = self.state is State.FAILED
        self._paused_at_stop = self.state is State.PAUSED
        self._set(State.STOPPING)
        self._consuming = False
        deadline = time.monotonic() + timeout
        if self.micro is not None:
            await self.micro.drain_endpoints()
        for sub in self.event_subs:
            with contextlib.suppress(Exception):
                await sub.drain()  # type: ignore[no-untyped-call]
        self.event_subs.clear()
        pending = [*self.consumers, *self.tasks]
        if pending:
            _, late = await asyncio.wait(pending, timeout=max(deadline - time.monotonic(), 0.1))
            for t in late:
                t.cancel()
            if late:
                self.log.warning("%s: cancelled %d tasks still running at shutdown",
                                 self.name, len(late))
                await asyncio.wait(late, timeout=1.0)
        if not was_failed:
            await self._dispose_actor()
        if self.micro is not None:
            await self.micro.stop()
        self._set(State.STOPPED)
