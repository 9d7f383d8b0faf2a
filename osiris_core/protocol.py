"""The runtime protocol: what the core says on the wire about itself.

Error replies, control requests and replies, actor and node status, the wanted signal and
cancellation. Domain payloads live outside the core, in `osiris_contracts`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec

__all__ = [
    "ActorState",
    "ActorStatus",
    "ActorWanted",
    "CancelRequest",
    "Contract",
    "ControlReply",
    "CORE_OPS",
    "ControlRequest",
    "CoreOp",
    "PauseArgs",
    "PauseOp",
    "ProfileArgs",
    "ProfileFrame",
    "ProfileOp",
    "ProfileResult",
    "RestartOp",
    "ResumeOp",
    "StatusOp",
    "decode_control",
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
    """`osiris.<actor>.control` as sent: `{"op": ..., "args": {...}}`. The core's own ops
    decode into the typed union `CoreOp` (see `decode_control`); any other op is the actor's
    (`Actor.on_control(op, args)`)."""

    op: str
    args: dict[str, Any] = {}


class PauseArgs(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    force: bool = False
    """Pause at once instead of waiting for in-flight requests."""
    timeout: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 30.0
    """Seconds to wait for in-flight requests before giving up (503)."""


class NoArgs(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    pass


class StatusOp(Contract, tag="status", tag_field="op"):
    args: NoArgs = NoArgs()


class PauseOp(Contract, tag="pause", tag_field="op"):
    args: PauseArgs = PauseArgs()


class ResumeOp(Contract, tag="resume", tag_field="op"):
    args: NoArgs = NoArgs()


class RestartOp(Contract, tag="restart", tag_field="op"):
    args: NoArgs = NoArgs()


class ProfileArgs(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    seconds: Annotated[float, msgspec.Meta(ge=0.1, le=60)] = 5.0
    """How long to sample the process."""
    format: Literal["speedscope", "html"] = "speedscope"
    """speedscope JSON (one "sampled" profile per thread) or pyinstrument's HTML."""


class ProfileOp(Contract, tag="profile", tag_field="op"):
    """Profile the whole process hosting the actor (every thread, `seconds` long); the
    `ControlReply.result` is a `ProfileResult`. One profile at a time per process (409)."""

    args: ProfileArgs = ProfileArgs()


CoreOp = StatusOp | PauseOp | ResumeOp | RestartOp | ProfileOp
"""The control ops every actor answers (the lifecycle's own, and a profile of its process)."""
CORE_OPS = frozenset({"status", "pause", "resume", "restart", "profile"})


class _OpName(msgspec.Struct):
    op: str = "status"


_op_name = msgspec.json.Decoder(_OpName)
_core_op: msgspec.json.Decoder[CoreOp] = msgspec.json.Decoder(CoreOp)
_actor_op = msgspec.json.Decoder(ControlRequest)


def decode_control(data: bytes) -> CoreOp | ControlRequest:
    """A control payload (empty = status) as a typed core op or an actor-specific request;
    raises msgspec errors naming the field."""
    data = data or b'{"op": "status"}'
    if _op_name.decode(data).op in CORE_OPS:
        return _core_op.decode(data)
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


class ControlReply(msgspec.Struct, kw_only=True):
    """Reply of a control op: the actor's status after the op, plus op-specific data."""

    ok: bool
    status: ActorStatus
    result: dict[str, Any] = {}


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
