"""The runtime protocol: what the core says on the wire about itself.

Error replies, control requests and replies, actor and node status, the wanted signal and
cancellation. Domain payloads (generation, proposals, feedback …) live in `contracts`.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

__all__ = [
    "ActorState",
    "ActorStatus",
    "ActorWanted",
    "CancelRequest",
    "Contract",
    "ControlReply",
    "ControlRequest",
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
    """`osiris.<actor>.control`: pause, resume, status, or an actor-specific op."""

    op: str
    args: dict[str, Any] = {}


class ActorStatus(msgspec.Struct, kw_only=True):
    """What an actor reports about itself (control `status`, runtime status, /health)."""

    name: str
    plugin: str
    state: ActorState
    restarts: int = 0
    in_flight: int = 0
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
