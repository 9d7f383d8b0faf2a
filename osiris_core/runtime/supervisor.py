"""ActorCell: runs one actor — its lifecycle, restarts, subscriptions and shutdown.

The cell composes the parts: `Lifecycle` (the state table), `Dispatcher` (requests),
`EventRunner` (core subscriptions and the durable consumer with dead letters) and
`ControlServer` (the control subject). It restarts the actor with exponential backoff and
jitter when the actor itself is unhealthy — `on_start` or a background task failed, a
handler raised `ActorFatal`, `health()` raised — and marks it failed after too many such
crashes in a window. A failed *request* never counts (DESIGN §13).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from osiris_core.actor import Actor, ActorContext, EventSpec, State
from osiris_core.config import PluginConfig
from osiris_core.errors import ServiceError, Unavailable
from osiris_core.nats.bus import Bus, encode
from osiris_core.nats.micro import Endpoint, MicroService, drain_sub, finish
from osiris_core.observability.metrics import ProcessMetrics
from osiris_core.protocol import (
    ActorStatus,
    PauseResult,
    RestartResult,
    ResumeResult,
    StartingReply,
)
from osiris_core.runtime.control import ControlServer
from osiris_core.runtime.dispatch import Dispatcher
from osiris_core.runtime.events import EventRunner, Handler, dynamic_spec
from osiris_core.runtime.lifecycle import Lifecycle, Phase, Trigger
from osiris_core.runtime.slots import Slots
from osiris_core.subjects import Catalogue, control, starting

__all__ = ["ActorCell"]

log = logging.getLogger("osiris.supervisor")
PENDING_EVENTS = 65_536
CUT_GRACE_S = 0.5  # after a cut, time for buffered requests to be refused before cancelling


class ActorCell:
    """Supervises one actor class inside a runtime."""

    def __init__(self, cls: type[Actor[Any]], *, plugin: str, config: PluginConfig, bus: Bus,
                 catalogue: Catalogue, data_dir: Path, node: str,
                 metrics: ProcessMetrics | None = None) -> None:
        self.cls = cls
        self.name = cls.name
        self.plugin = plugin
        self.config = config
        self.bus = bus
        self.data_dir = data_dir
        self.node = node
        self.services, self.events = cls.handler_specs(catalogue.get)
        self.lifecycle = Lifecycle(self.name)
        self.actor: Actor[Any] | None = None
        self.ready = asyncio.Event()  # set unless requests must wait (starting, paused)
        self.ready.set()
        self._idle: asyncio.Future[None] | None = None  # a pause waiting for active == 0
        self.slots = Slots(config.max_concurrency)
        self.tasks: set[asyncio.Task[Any]] = set()
        self.background: set[asyncio.Task[Any]] = set()
        self.in_flight = self.active = self.handled = self.errors = self.restarts = 0
        self.last_error: str | None = None
        self.last_used: float | None = None
        self.crash_times: deque[float] = deque()
        self.micro: MicroService | None = None
        self.event_subs: list[Subscription] = []      # declared core subscriptions
        self.instance_subs: list[Subscription] = []   # made by this instance's on_start
        self.standby: list[Subscription] = []         # "still starting" answers
        self.consumers: dict[str, asyncio.Task[Any]] = {}  # durable subject → its loop
        self.subscribed = False
        self._restart_task: asyncio.Task[Any] | None = None
        self.lock = asyncio.Lock()
        self.log = logging.getLogger(f"osiris.{self.name}")
        self.dispatch = Dispatcher(self)
        self.runner = EventRunner(self)
        self.control_server = ControlServer(self, cls.control_specs())
        self.process_metrics = metrics if metrics is not None else ProcessMetrics()
        self.metrics = self.process_metrics.actor(self.name, self._live)
        for spec in self.services:
            self.metrics.endpoint(spec.endpoint)
        for ev in self.events:
            self.metrics.subscription(ev.subject, ev.durable)

    # --- state ------------------------------------------------------------------------------
    @property
    def state(self) -> State:
        return self.lifecycle.state

    def fire(self, trigger: Trigger) -> None:
        before, after = self.lifecycle.fire(trigger)
        if before is not after:
            self.log.info("%s: %s → %s (%s)", self.name, before.state.value, after.state.value,
                          after.value)
        if self.lifecycle.waits:
            self.ready.clear()
        else:
            self.ready.set()

    def _live(self) -> tuple[int, int, State]:
        """In flight, waiting, state: what a metrics scrape reads (from any thread)."""
        return self.in_flight, self.dispatch.waiting, self.lifecycle.phase.state

    def begin_activity(self) -> None:
        """A handler starts running (a pause waits until none does); pair with
        `end_activity`. A counter only: every request passes here."""
        self.active += 1

    def end_activity(self) -> None:
        self.active -= 1
        if not self.active and self._idle is not None and not self._idle.done():
            self._idle.set_result(None)

    async def _until_idle(self, timeout: float) -> None:
        """Return once no handler runs; TimeoutError after `timeout`."""
        if not self.active:
            return
        self._idle = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait_for(asyncio.shield(self._idle), timeout)
        finally:
            self._idle = None

    @contextlib.asynccontextmanager
    async def activity(self) -> AsyncIterator[None]:
        """`begin_activity` … `end_activity` around a block."""
        self.begin_activity()
        try:
            yield
        finally:
            self.end_activity()

    def status(self) -> ActorStatus:
        facts: dict[str, Any] = {}
        if self.actor is not None:
            try:
                facts = self.actor.facts()
            except Exception as e:  # noqa: BLE001 - status must always answer
                facts = {"facts_error": repr(e)}
        return ActorStatus(
            name=self.name, plugin=self.plugin, state=self.state.value, restarts=self.restarts,
            in_flight=self.in_flight, waiting=self.dispatch.waiting, handled=self.handled,
            errors=self.errors,
            last_error=self.last_error, last_used=self.last_used, facts=facts,
        )

    # --- operator ops (the control subject) ------------------------------------------------
    async def pause(self, *, force: bool = False, timeout: float = 30.0) -> PauseResult:
        """Stop taking work, wait for in-flight handlers (unless `force`), call on_pause."""
        async with self.lock:
            if self.lifecycle.phase is Phase.PAUSED:
                return PauseResult(already=True)
            if not self.lifecycle.can(Trigger.PAUSE):
                raise Unavailable(f"cannot pause {self.name}: it is {self.state.value}")
            t0 = time.perf_counter()
            self.fire(Trigger.PAUSE)
            self.dispatch.reset_wanted()
            if not force:
                try:
                    await self._until_idle(timeout)
                except TimeoutError:
                    self.fire(Trigger.UNPAUSE)
                    raise Unavailable(f"{self.name} is busy: {self.active} requests in flight",
                                      in_flight=self.active) from None
            assert self.actor is not None
            try:
                await self.actor.on_pause()
            except Exception as e:
                self.fire(Trigger.UNPAUSE)
                raise ServiceError(f"{self.name}: on_pause failed: {e!r}") from e
            self.metrics.paused()
            return PauseResult(pause_s=time.perf_counter() - t0)

    async def resume(self) -> ResumeResult:
        """on_resume, then take work again."""
        async with self.lock:
            if self.lifecycle.phase is Phase.RUNNING:
                return ResumeResult(already=True)
            if self.lifecycle.phase is not Phase.PAUSED:
                raise Unavailable(f"cannot resume {self.name}: it is {self.state.value}")
            t0 = time.perf_counter()
            assert self.actor is not None
            await self.actor.on_resume()
            self.fire(Trigger.UNPAUSE)
            self.metrics.resumed()
            return ResumeResult(resume_s=time.perf_counter() - t0)

    async def restart(self) -> RestartResult:
        """The operator's restart: a fresh instance now, the crash count cleared (a failed
        actor too)."""
        async with self.lock:
            if not self.lifecycle.can(Trigger.RESTART):
                raise Unavailable(f"{self.name} is {self.state.value}")
            was_failed = self.lifecycle.phase is Phase.FAILED
            self.fire(Trigger.RESTART)
            if not was_failed:
                await self.dispose_actor()
            self.crash_times.clear()
            self.metrics.restarted("operator")
            await self.boot()
            return RestartResult(state=self.state.value)

    # --- start / restart --------------------------------------------------------------------
    async def start(self) -> None:
        """Start the micro service and the actor; returns once running or failed."""
        self.fire(Trigger.BOOT)
        self.micro = MicroService(
            self.bus.nc, name=self.name, version=self.cls.version,
            description=self.cls.description, metadata={"plugin": self.plugin, "node": self.node},
        )
        await self.micro.start()
        await self.micro.add_endpoint(Endpoint(
            "control", control(self.name), self.name, self.control_server.on_msg))
        for spec in self.services:
            self.standby.append(await self.bus.nc.subscribe(starting(spec.subject),
                                                            cb=self._answer_standby))
        await _flush(self.bus)
        await self.boot()

    async def _answer_standby(self, msg: Msg) -> None:
        if msg.reply and self.lifecycle.phase is Phase.BOOTING:
            with contextlib.suppress(Exception):
                await self.bus.nc.publish(msg.reply, encode(StartingReply(
                    actor=self.name, node=self.node, wait_s=self.config.request_wait_s)))

    def _new_actor(self) -> Actor[Any]:
        ctx: ActorContext[Any] = ActorContext(
            name=self.name, plugin=self.plugin, config=self.config, bus=self.bus,
            data_dir=self.data_dir, node=self.node, spawn=self._spawn,
            subscribe=self.subscribe, metrics=self.process_metrics,
        )
        return self.cls(ctx)

    async def boot(self) -> None:
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
                await self._drop_instance_subs()
                if not self._note_crash(e):
                    await self._fail()
                    return
                await asyncio.sleep(self._backoff())
                self.metrics.restarted("crash")
        if not self.lifecycle.can(Trigger.STARTED):  # stopped meanwhile
            return
        if not self.subscribed:
            await self._subscribe()
        else:
            self._revive_consumers()
        if not self.lifecycle.can(Trigger.STARTED):
            return
        self.fire(Trigger.STARTED)
        await self._leave_standby()
        if self.config.health_interval_s > 0:
            self._spawn(self._health_loop(self.config.health_interval_s), "health")

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
        """The actor is unhealthy (a background task failed, ActorFatal, health check):
        close the gate now, restart with backoff. Synchronous on purpose: the very next
        request already waits for the new instance. Crashes of an instance that is already
        being replaced are not counted twice."""
        if self.lifecycle.phase not in (Phase.RUNNING, Phase.PAUSED):
            return
        ok = self._note_crash(exc)
        self.fire(Trigger.CRASH)
        self._restart_task = asyncio.get_running_loop().create_task(self._restart(ok))

    async def _restart(self, within_limit: bool) -> None:
        async with self.lock:
            await self.dispose_actor()
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
            self.metrics.restarted("crash")
            await self.boot()

    async def _health_loop(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            if self.lifecycle.phase is Phase.RUNNING and self.actor is not None:
                try:
                    await asyncio.wait_for(self.actor.health(), interval)
                except TimeoutError:
                    raise RuntimeError(f"health check took longer than {interval:g}s") from None

    async def dispose_actor(self, timeout: float = 5.0) -> None:
        """on_stop first (it may end its own tasks gracefully), then cancel what is left."""
        await self._drop_instance_subs()
        if self.actor is not None:
            try:
                await asyncio.wait_for(self.actor.on_stop(), timeout)
            except Exception:  # noqa: BLE001
                self.log.exception("%s: on_stop failed", self.name)
        left = [t for t in self.background if not t.done()]
        for t in left:
            t.cancel()
        if left:
            await asyncio.wait(left, timeout=min(timeout, 2.0))
        self.background.clear()

    async def _fail(self) -> None:
        """Say failed (requests already delivered get a 503), then leave the queue groups;
        the control subject stays up so an operator can restart it."""
        self.fire(Trigger.GIVE_UP)
        await self._unsubscribe()
        await self._leave_standby()

    # --- subscriptions ----------------------------------------------------------------------
    async def _subscribe(self) -> None:
        assert self.micro is not None
        for spec in self.services:
            ep = Endpoint(spec.endpoint, spec.subject, self.name, self.control_server.on_msg)
            ep.callback = self.dispatch.callback(spec, ep)
            await self.micro.add_endpoint(ep)
        for ev in self.events:
            if ev.durable:
                self.consumers[ev.subject] = self._consumer(ev)
            else:
                self.event_subs.append(await self.bus.nc.subscribe(
                    ev.subject, queue=self.name if ev.queue else "",
                    cb=self.runner.callback(Handler(ev)), pending_msgs_limit=PENDING_EVENTS))
        self.subscribed = True
        await _flush(self.bus)  # the server knows our interest before we say "running"

    async def subscribe(self, subject: str, handler: Callable[..., Awaitable[Any]], *,
                        queue: bool = True, event_type: Any = None) -> None:
        """`Actor.subscribe`: a run-time core subscription owned by the current instance."""
        spec = dynamic_spec(subject, handler, queue, event_type)
        self.instance_subs.append(await self.bus.nc.subscribe(
            subject, queue=self.name if queue else "",
            cb=self.runner.callback(Handler(spec, handler)), pending_msgs_limit=PENDING_EVENTS))

    async def _drop_instance_subs(self) -> None:
        subs, self.instance_subs = self.instance_subs, []
        for sub in subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _leave_standby(self) -> None:
        subs, self.standby = self.standby, []
        for sub in subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _unsubscribe(self) -> None:
        """Leave queue groups and stop consuming (used on failure; control stays up)."""
        if self.micro is not None:
            await self.micro.remove_endpoints(keep=frozenset({"control"}))
        subs, self.event_subs = self.event_subs, []
        for sub in subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        await self._drop_instance_subs()
        with contextlib.suppress(Exception):
            await _flush(self.bus)
        self.subscribed = False

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

    def _revive_consumers(self) -> None:
        """After a restart: a durable consumer whose loop ended (it could not bind — the
        JetStream API timed out under load — or it failed; either crashed the actor) starts
        again. The subscriptions themselves survive restarts; these loops must too, or the
        stream fills up while the actor says it runs."""
        for ev in self.events:
            task = self.consumers.get(ev.subject)
            if ev.durable and (task is None or task.done()):
                self.log.info("%s: starting the durable consumer of %s again", self.name,
                              ev.subject)
                self.consumers[ev.subject] = self._consumer(ev)

    def _consumer(self, ev: EventSpec) -> asyncio.Task[None]:
        """A durable consumer's loop; one that ends with an error is a crash (restart), never
        a consumer silently gone while its stream fills up."""
        task = asyncio.get_running_loop().create_task(self.runner.consume(ev),
                                                      name=f"{self.name}:consume:{ev.subject}")

        def done(t: asyncio.Task[None]) -> None:
            if not t.cancelled() and (exc := t.exception()) is not None:
                self.log.error("%s: durable consumer of %s failed: %r", self.name, ev.subject,
                               exc)
                self.crash(exc)

        task.add_done_callback(done)
        return task

    # --- stop -------------------------------------------------------------------------------
    async def stop(self, timeout: float = 30.0) -> None:
        """Drain within `timeout`: leave every subscription at once, let delivered work finish
        until the budget is spent, then refuse what is still buffered (503 "cut off"), cancel
        what still runs, on_stop (bounded), leave."""
        deadline = time.monotonic() + timeout
        if self._restart_task is not None and not self._restart_task.done():
            self._restart_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._restart_task
        if self.lifecycle.phase is Phase.STOPPED:
            return
        was_failed = self.lifecycle.phase is Phase.FAILED
        self.fire(Trigger.STOP)
        await self._leave_standby()
        drains = self.micro.drain_endpoints() if self.micro is not None else []
        subs, self.event_subs = [*self.event_subs, *self.instance_subs], []
        self.instance_subs = []
        drains += [asyncio.ensure_future(drain_sub(s)) for s in subs]
        budget = max(deadline - time.monotonic() - 1.0, 0.05)
        pending = {*self.consumers.values(), *self.tasks, *drains}
        if pending:
            _, late = await asyncio.wait(pending, timeout=budget)
            if late:
                self.fire(Trigger.CUT)  # what is still buffered is refused at once
                _, late = await asyncio.wait(late, timeout=CUT_GRACE_S)
                for t in late:
                    t.cancel()  # a cancelled request replies 503 "cut off"
                if late:
                    self.log.warning("%s: cut off %d tasks still running at shutdown",
                                     self.name, len(late))
                    await asyncio.wait(late, timeout=0.5)
        await finish(drains, 0)
        await self.dispatch.beats.close()
        if not was_failed:
            await self.dispose_actor(max(deadline - time.monotonic(), 0.5))
        if self.micro is not None:
            await self.micro.stop()
        self.fire(Trigger.STOPPED)


async def _flush(bus: Bus) -> None:
    """Flush, shielded: a start cut short by a signal must not cancel nats-py's PONG future
    (its reader then fails on the answer with InvalidStateError)."""
    await asyncio.shield(bus.nc.flush())
