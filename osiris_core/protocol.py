"""The runtime protocol: what the core says on the wire about itself.

Error replies, control requests and replies, actor and node status, the wanted signal and
cancellation. Domain payloads live outside the core, in `osiris_contracts`.
"""

from __future__ import annotations

import functools
import typing
from typing import TYPE_CHECKING, Annotated, Any, Generic, Literal

import msgspec

if TYPE_CHECKING:
    from typing_extensions import TypeVar

    R = TypeVar("R", default=dict[str, Any])
else:  # msgspec reads an unparameterised R as Any: a bare ControlReply decodes a dict
    from typing import TypeVar

    R = TypeVar("R")

__all__ = [
    "ActorState",
    "ActorStatus",
    "ActorWanted",
    "CancelRequest",
    "Contract",
    "ControlOp",
    "ControlReply",
    "CORE_OPS",
    "ControlRequest",
    "CoreOp",
    "NoArgs",
    "NoResult",
    "PauseArgs",
    "PauseOp",
    "PauseResult",
    "ProfileArgs",
    "ProfileFrame",
    "ProfileOp",
    "ProfileResult",
    "RestartOp",
    "RestartResult",
    "ResumeOp",
    "ResumeResult",
    "StatusOp",
    "decode_control",
    "op_name",
    "op_result_type",
    "DeadLetter",
    "StartingReply",
    "ErrorReply",
    "NodeStatus",
    "PluginStatus",
]

ActorState = Literal["starting", "running", "paused", "stopping", "stopped", "failed"]


class Contract(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Base of the wire contracts: unknown fields are rejected with their name."""


class ErrorReply(msgspec.Struct, kw_only=True):
    """Body of every error reply (NATS micro convention: headers carry code and text)."""

    error: str
    code: int = 500
    field: str | None = None
    detail: dict[str, Any] | None = None


class ActorWanted(Contract):
    """`osiris.runtime.wanted`: a request is waiting for a paused actor (the core's request
    gate says so once per pause, again after a second of waiting)."""

    actor: str
    node: str
    waiting: int = 0
    ts: float = 0.0


class CancelRequest(Contract):
    """`osiris.<actor>.cancel`: the caller gave up on the request it sent with this
    `Osiris-Request-Id` header (the HTTP client went away)."""

    request_id: str


class ControlRequest(Contract):
    """`osiris.<actor>.control` as sent: `{"op": ..., "args": {...}}`, untyped. The core's
    ops and an actor's declared ones (`ControlOp` subclasses) decode into their Structs; any
    other op is the actor's `on_control(op, args)`. Send this only for an op nobody declared
    (a third-party actor's): `Bus.control(actor, ControlRequest(op="x", args={...}))`."""

    op: str
    args: dict[str, Any] = {}


class ControlOp(Contract, Generic[R], tag_field="op"):
    """Base of a typed control op: `{"op": <tag>, "args": {...}}` on the wire, as every
    client has always sent it. Subclass with the op's name as `tag`, its arguments as an
    `args` Struct and its result as the type parameter; the actor that serves it declares it
    with `@control_op`, a caller sends it with `Bus.control(actor, op)` and gets a
    `ControlReply[result]`::

        class PolicyOp(ControlOp[PolicyReport], tag="policy"):
            args: PolicyArgs = PolicyArgs()
    """


@functools.cache
def op_result_type(cls: type[ControlOp[Any]]) -> Any:
    """The result type an op class declares (`ControlOp[T]` → T; a dict when it names
    none)."""
    for klass in cls.__mro__:
        for base in getattr(klass, "__orig_bases__", ()):
            if typing.get_origin(base) is ControlOp:
                return typing.get_args(base)[0]
    return dict[str, Any]


def op_name(cls: type[ControlOp[Any]]) -> str:
    """The op's name on the wire (its tag)."""
    tag = cls.__struct_config__.tag
    if not isinstance(tag, str):
        raise TypeError(f"{cls.__qualname__} needs a tag= (the op's name on the wire)")
    return tag


class NoArgs(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    pass


class NoResult(msgspec.Struct):
    """The result of an op that only reads the status (`{}`)."""


class PauseArgs(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    force: bool = False
    """Pause at once instead of waiting for in-flight requests."""
    timeout: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 30.0
    """Seconds to wait for in-flight requests before giving up (503)."""


class PauseResult(msgspec.Struct, kw_only=True, omit_defaults=True):
    """`{"already": true}` when it was paused, else `{"pause_s": …}`."""

    already: bool = False
    pause_s: float | None = None
    """Seconds the pause took (waiting for in-flight requests, then `on_pause`)."""


class ResumeResult(msgspec.Struct, kw_only=True, omit_defaults=True):
    """`{"already": true}` when it was running, else `{"resume_s": …}`."""

    already: bool = False
    resume_s: float | None = None
    """Seconds `on_resume` took (reloading weights, for a model actor)."""


class RestartResult(msgspec.Struct, kw_only=True):
    state: ActorState
    """The state the fresh instance reached (running, or failed)."""


class StatusOp(ControlOp[NoResult], tag="status"):
    args: NoArgs = NoArgs()


class PauseOp(ControlOp[PauseResult], tag="pause"):
    args: PauseArgs = PauseArgs()


class ResumeOp(ControlOp[ResumeResult], tag="resume"):
    args: NoArgs = NoArgs()


class RestartOp(ControlOp[RestartResult], tag="restart"):
    args: NoArgs = NoArgs()


class ProfileFrame(msgspec.Struct, kw_only=True):
    """A frame of a profile and the time threads spent in it (own time, idle waits left
    out)."""

    name: str
    file: str = ""
    line: int = 0
    seconds: float = 0.0
    samples: int = 0


class ProfileResult(msgspec.Struct, kw_only=True):
    """A live profile of one process: the `profile` control op's result and the reply of
    `osiris.runtime.profile.<node>`. `data` is the file (`format`), gzip'ed then base64'd."""

    format: Literal["speedscope", "html"]
    encoding: Literal["gzip+base64"] = "gzip+base64"
    data: str
    seconds: float
    samples: int
    threads: list[str] = []
    top: list[ProfileFrame] = []
    node: str = ""
    pid: int = 0
    merged: bool = False
    """Identical stacks were merged to fit the connection's max_payload (time order lost)."""


class ProfileArgs(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    seconds: Annotated[float, msgspec.Meta(ge=0.1, le=60)] = 5.0
    """How long to sample the process."""
    format: Literal["speedscope", "html"] = "speedscope"
    """speedscope JSON (one "sampled" profile per thread) or pyinstrument's HTML."""


class ProfileOp(ControlOp[ProfileResult], tag="profile"):
    """Profile the whole process hosting the actor (every thread, `seconds` long); the
    `ControlReply.result` is a `ProfileResult`. One profile at a time per process (409)."""

    args: ProfileArgs = ProfileArgs()


CoreOp = StatusOp | PauseOp | ResumeOp | RestartOp | ProfileOp
"""The control ops every actor answers (the lifecycle's own, and a profile of its process)."""
CORE_OPS = frozenset(op_name(op) for op in typing.get_args(CoreOp))


class _OpName(msgspec.Struct):
    op: str = "status"


_op_name = msgspec.json.Decoder(_OpName)
_core_op: msgspec.json.Decoder[CoreOp] = msgspec.json.Decoder(CoreOp)
_actor_op = msgspec.json.Decoder(ControlRequest)


def read_op_name(data: bytes) -> str:
    """The `op` of a control payload (empty, or without one: status)."""
    return _op_name.decode(data or b"{}").op


def decode_control(data: bytes) -> CoreOp | ControlRequest:
    """A control payload (empty = status) as a typed core op or an actor-specific request;
    raises msgspec errors naming the field."""
    if read_op_name(data) in CORE_OPS:
        return _core_op.decode(data) if data else StatusOp()
    return _actor_op.decode(data)


class ActorStatus(msgspec.Struct, kw_only=True):
    """What an actor reports about itself (control `status`, runtime status, /health)."""

    name: str
    plugin: str
    state: ActorState
    restarts: int = 0
    in_flight: int = 0
    """Requests being served (holding one of `max_concurrency` slots)."""
    waiting: int = 0
    """Requests delivered and waiting for a slot."""
    handled: int = 0
    errors: int = 0
    last_error: str | None = None
    last_used: float | None = None
    facts: dict[str, Any] = {}


class ControlReply(msgspec.Struct, Generic[R], kw_only=True):
    """Reply of a control op: the actor's status after the op, plus the op's result.

    `ControlReply[PauseResult]` decodes the result as that type (what `Bus.control` does with
    the op's declared result); a bare `ControlReply` leaves it a dict."""

    ok: bool
    status: ActorStatus
    result: R = msgspec.field(default_factory=dict)  # type: ignore[assignment] # a dict when R is


class PluginStatus(msgspec.Struct, kw_only=True):
    """One plugin as a runtime sees it."""

    name: str
    package: str | None = None
    version: str | None = None
    loaded: bool = True
    error: str | None = None
    actors: list[str] = []


class NodeStatus(msgspec.Struct, kw_only=True):
    """Reply of one runtime process to `osiris.runtime.status` (every process answers)."""

    node: str
    pid: int
    started: float
    plugins: list[PluginStatus]
    actors: list[ActorStatus]


class StartingReply(Contract):
    """A replica that is still starting answers `osiris.runtime.starting.<subject>` with this:
    callers that found no responder wait up to `wait_s` for it instead of failing at once."""

    actor: str
    node: str
    wait_s: float


class DeadLetter(Contract):
    """`osiris.deadletter`: a durable event that failed `attempts` times (or could not be
    decoded), moved aside so its consumer could go on. `payload` is the original bytes as
    text when they are UTF-8, else base64 (`payload_encoding`)."""

    id: str
    """`<stream>:<sequence>:<consumer>`: stable, so a re-sent dead letter is stored once."""
    subject: str
    stream: str
    stream_seq: int
    consumer: str
    actor: str
    node: str
    error: str
    attempts: int
    payload: str
    payload_encoding: Literal["utf-8", "base64"] = "utf-8"
    headers: dict[str, str] = {}
    msg_id: str = ""
    ts: float = 0.0


if not TYPE_CHECKING:  # hidden from mypy, which would accept any name of this module

    def __getattr__(name: str) -> object:
        """The application's names that moved to `osiris_contracts` (deprecated here)."""
        from osiris_core.moved import moved_name

        return moved_name(__name__, name)
