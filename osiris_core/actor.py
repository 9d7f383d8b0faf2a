"""The Actor: the unit of runtime work. Plugin authors subclass it.

The framework owns the lifecycle; you write hooks and handlers::

    class Echo(Actor[EchoConfig]):
        name = "echo"                      # micro service name and queue group

        async def on_start(self) -> None:  # load models, open files ...
            ...

        @service(ECHO)                     # request-reply; the type hint is the schema
        async def echo(self, req: EchoRequest) -> EchoReply:
            return EchoReply(text=req.text)

        @on_event(THINGS_HAPPENED)         # durable subjects get a JetStream consumer
        async def record(self, evt: Thing, meta: EventMeta) -> None:
            ...                            # must be idempotent: key writes by meta.msg_id

        @control_op                        # osiris.echo.control {"op": "reset", "args": {}}
        async def reset(self, op: ResetOp) -> ResetResult:  # ResetOp(ControlOp[ResetResult])
            ...

Failure policy (docs/plugins.md, "Failures"): an exception while serving one request is
that request's error — `ServiceError` and its subclasses (BadRequest, NotFound, Unavailable …)
with their code, anything else a 500 — and never restarts the actor. The actor restarts with
a fresh instance when `on_start` or a background task (`spawn`) fails, when a handler raises
`ActorFatal` (its engine is corrupt), or when `health()` raises. Subjects known only at start
(from config) are subscribed with `self.subscribe(...)` in `on_start`, which gives them the
same pause gate, concurrency bound and draining as `@on_event`.
"""

from __future__ import annotations

import inspect
import logging
import typing
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from osiris_core.config import PluginConfig
from osiris_core.errors import BadRequest
from osiris_core.protocol import CORE_OPS, ControlOp, op_name
from osiris_core.runtime.lifecycle import TRANSITIONS, State
from osiris_core.subjects import Subject

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS
    from nats.js import JetStreamContext

    from osiris_core.nats.bus import Bus
    from osiris_core.observability.metrics import ProcessMetrics

__all__ = [
    "TRANSITIONS",
    "Actor",
    "ActorContext",
    "EventMeta",
    "EventSpec",
    "RequestContext",
    "ServiceSpec",
    "State",
    "control_op",
    "on_event",
    "service",
]

C = TypeVar("C", bound=PluginConfig)
F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


@dataclass(frozen=True)
class ServiceSpec:
    """A request-reply handler: subject, decoded request type, and how to call it."""

    subject: str
    endpoint: str
    attr: str
    request_type: Any
    wants_context: bool


@dataclass(frozen=True)
class EventSpec:
    """An event handler: core subscription, or JetStream durable consumer when `durable`."""

    subject: str
    attr: str
    event_type: Any
    durable: bool
    stream: str | None
    batch: int
    queue: bool
    wants_meta: bool

    @property
    def consumer(self) -> str:
        return self.attr.replace(".", "_")


@dataclass(frozen=True)
class EventMeta:
    """Where an event came from. `msg_id` is stable across redeliveries: key writes by it."""

    subject: str
    msg_id: str
    headers: Mapping[str, str]
    stream_seq: int | None = None
    delivered: int = 1


@dataclass
class RequestContext:
    """Per-request facts for handlers that ask for them (second parameter)."""

    subject: str
    headers: Mapping[str, str]
    reply: str
    bus: Bus


def service(subject: Subject | str, *, endpoint: str | None = None) -> Callable[[F], F]:
    """Mark a method as the request-reply handler of `subject`.

    The first parameter's type hint (a msgspec Struct, `dict`, `bytes` or `None`) is how the
    request is decoded; the return value is encoded as JSON (bytes are sent as they are).
    A second parameter receives a `RequestContext`.
    """

    def mark(fn: F) -> F:
        fn.__osiris_service__ = (str(subject), endpoint)  # type: ignore[attr-defined]
        return fn

    return mark


def on_event(
    subject: Subject | str, *, durable: bool | None = None, batch: int = 1, queue: bool = True
) -> Callable[[F], F]:
    """Mark a method as the handler of event `subject`.

    `durable` defaults to the subject's catalogue entry. Durable handlers get a JetStream
    durable pull consumer with explicit acks: a message is acked only after the handler
    returns, so it must be idempotent. With `batch > 1` the handler receives a list of
    `(event, EventMeta)` pairs. `queue=True` shares events between replicas of the actor;
    `queue=False` gives each replica every event (core subjects only).
    """
    if batch < 1:
        raise ValueError("batch must be >= 1")

    def mark(fn: F) -> F:
        fn.__osiris_event__ = (subject, durable, batch, queue)  # type: ignore[attr-defined]
        return fn

    return mark


def control_op(fn: F) -> F:
    """Mark a method as the handler of a typed control op: its parameter's type hint (a
    `protocol.ControlOp` subclass) names the op and decodes `{"op": ..., "args": {...}}`
    (a bad field is a 422 naming it); the return value, the op's declared result, becomes
    `ControlReply.result`. Ops nobody declared still reach `on_control(op, args)`."""
    fn.__osiris_control__ = True  # type: ignore[attr-defined]
    return fn


@dataclass(frozen=True)
class ControlSpec:
    """A typed control op an actor serves: the op's Struct and the method that runs it."""

    op: str
    op_type: Any
    attr: str


class ActorContext(Generic[C]):
    """What the framework hands an actor: its config, bus, data dir, logger and helpers."""

    def __init__(
        self,
        *,
        name: str,
        plugin: str,
        config: C,
        bus: Bus,
        data_dir: Any,
        node: str,
        spawn: Callable[[Coroutine[Any, Any, Any], str], Any],
        subscribe: Callable[..., Awaitable[None]] | None = None,
        metrics: ProcessMetrics | None = None,
    ) -> None:
        self.name = name
        self.plugin = plugin
        self.config = config
        self.bus = bus
        self.data_dir = data_dir
        self.node = node
        self.metrics = metrics
        """The process's metrics (`osiris_core.observability.metrics`): an actor may add its own series to
        `metrics.registry`; the gateway serves it on `/metrics`. None outside a runtime."""
        self.log = logging.getLogger(f"osiris.{name}")
        self._spawn = spawn
        self._subscribe = subscribe

    @property
    def nc(self) -> NATS:
        return self.bus.nc

    @property
    def js(self) -> JetStreamContext:
        return self.bus.js


class Actor(Generic[C]):
    """Base class of every actor. See the module docstring for an example."""

    name: ClassVar[str] = ""
    """Service name and queue group: replicas with the same name share the load."""
    version: ClassVar[str] = "0.1.0"
    description: ClassVar[str] = ""
    exposes_metrics: ClassVar[bool] = False
    """True for an actor that serves its process's metrics over HTTP itself (the gateway's
    `/metrics`): `ENABLE_METRICS` then opens no listener of the runtime's own."""

    def __init__(self, ctx: ActorContext[C]) -> None:
        self.ctx = ctx
        self.config: C = ctx.config
        self.log = ctx.log

    # --- lifecycle hooks (the framework calls them; never call them yourself) -----------
    async def on_start(self) -> None:
        """Acquire resources. Raising here counts as a crash (restart with backoff)."""

    async def on_stop(self) -> None:
        """Release resources. Called on shutdown and before a restart."""

    async def on_pause(self) -> None:
        """Release accelerator memory; the framework has already stopped new work."""

    async def on_resume(self) -> None:
        """Reacquire what `on_pause` released."""

    async def on_control(self, op: str, args: dict[str, Any]) -> dict[str, Any]:
        """Actor-specific control ops that no `@control_op` method declares (untyped: the
        op's name and its raw args); the core handles status, pause, resume, restart and
        profile."""
        raise BadRequest(f"unknown control op {op!r} for actor {self.name!r}", field="op")

    async def health(self) -> None:
        """Raise when the actor is unhealthy: it is restarted. Called every
        `health_interval_s` seconds while running (0, the default, turns it off)."""

    def facts(self) -> dict[str, Any]:
        """Extra status facts (loaded, device, adapter, resident bytes …) for /health."""
        return {}

    # --- helpers ------------------------------------------------------------------------
    async def publish(self, subject: Subject | str, payload: Any, *, msg_id: str | None = None,
                      headers: dict[str, str] | None = None) -> bool:
        """Publish an event (durable subjects need `msg_id`, the record's id)."""
        return await self.ctx.bus.publish(subject, payload, msg_id=msg_id, headers=headers)

    async def request(self, subject: Subject | str, payload: Any = None, *,
                      reply_type: type[Any] | None = None, timeout: float = 30.0) -> Any:
        """Request another actor's service; raises its ServiceError on failure."""
        return await self.ctx.bus.request(subject, payload, reply_type=reply_type,
                                          timeout=timeout)

    async def subscribe(self, subject: Subject | str, handler: Callable[..., Awaitable[Any]],
                        *, queue: bool = True, event_type: Any = None) -> None:
        """Subscribe `handler(event[, meta])` to a core (non-durable) subject chosen at run time
        — call it from `on_start`. Events get the guarantees of `@on_event`: they wait while
        the actor is paused or restarting, count against `max_concurrency`, drain on stop,
        and a failing handler is logged and counted without restarting the actor. The
        subscription belongs to this instance: a restart subscribes again through on_start.
        `event_type` (a Struct) decodes the payload; the default passes decoded JSON."""
        if self.ctx._subscribe is None:
            raise RuntimeError("subscribe() needs a supervised actor (call it from on_start)")
        await self.ctx._subscribe(str(subject), handler, queue=queue, event_type=event_type)

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str = "task") -> Any:
        """Run a background task owned by this actor: cancelled on stop, a crash restarts."""
        return self.ctx._spawn(coro, name)

    # --- introspection used by the framework --------------------------------------------
    @classmethod
    def handler_specs(
        cls, lookup: Callable[[str], Subject | None]
    ) -> tuple[list[ServiceSpec], list[EventSpec]]:
        """Collect the decorated handlers (validated once per class)."""
        if not cls.name:
            raise TypeError(f"{cls.__qualname__} must set a class attribute `name`")
        services: list[ServiceSpec] = []
        events: list[EventSpec] = []
        for attr in dir(cls):
            fn = getattr(cls, attr, None)
            if fn is None or not callable(fn):
                continue
            if hasattr(fn, "__osiris_service__"):
                subject, endpoint = fn.__osiris_service__
                req_type, extra = _first_param_type(fn)
                services.append(ServiceSpec(subject, endpoint or attr, attr, req_type, extra))
            if hasattr(fn, "__osiris_event__"):
                subj, durable, batch, queue = fn.__osiris_event__
                entry = subj if isinstance(subj, Subject) else lookup(str(subj))
                is_durable = durable if durable is not None else bool(entry and entry.durable)
                stream = entry.stream if entry and entry.durable else None
                if is_durable and stream is None:
                    raise TypeError(
                        f"{cls.__qualname__}.{attr}: durable subject {subj} is not in the "
                        "catalogue (register it with register_subjects, durable=True)"
                    )
                ev_type, extra = _first_param_type(fn)
                if batch > 1:
                    ev_type = _batch_item_type(ev_type)
                events.append(EventSpec(str(subj), attr, ev_type, is_durable, stream, batch,
                                        queue, extra))
        return services, events

    @classmethod
    def control_specs(cls) -> dict[str, ControlSpec]:
        """The typed control ops of the `@control_op` methods, by name (once per class)."""
        specs: dict[str, ControlSpec] = {}
        for attr in dir(cls):
            fn = getattr(cls, attr, None)
            if fn is None or not getattr(fn, "__osiris_control__", False):
                continue
            op_type, _ = _first_param_type(fn)
            if not (isinstance(op_type, type) and issubclass(op_type, ControlOp)):
                raise TypeError(f"{cls.__qualname__}.{attr}: a @control_op takes one "
                                f"parameter typed as a ControlOp subclass, not {op_type!r}")
            name = op_name(op_type)
            if name in CORE_OPS or name in specs:
                raise TypeError(f"{cls.__qualname__}.{attr}: control op {name!r} is "
                                "already served (a core op, or another method)")
            specs[name] = ControlSpec(name, op_type, attr)
        return specs


def _first_param_type(fn: Callable[..., Any]) -> tuple[Any, bool]:
    params = list(inspect.signature(fn).parameters.values())[1:]  # drop self
    if not params:
        return None, False
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # noqa: BLE001 - unresolvable hints: fall back to raw JSON
        hints = {}
    return hints.get(params[0].name, Any), len(params) > 1


def _batch_item_type(hint: Any) -> Any:
    """`list[tuple[T, EventMeta]]` → T."""
    args = typing.get_args(hint)
    if args:
        inner = typing.get_args(args[0])
        if inner:
            return inner[0]
    return Any
