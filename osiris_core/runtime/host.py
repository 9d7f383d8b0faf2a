"""What a cell's collaborators may touch of it: the dispatcher and event runner see a
`CellView`, the control server a `ControlledCell`. Narrow on purpose: they never import
`ActorCell` (no import circle), and a field they do not name here is the cell's own."""

from __future__ import annotations

import asyncio
import logging
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from osiris_core.actor import Actor
from osiris_core.config import PluginConfig
from osiris_core.nats.bus import Bus
from osiris_core.observability.metrics import ActorMetrics
from osiris_core.protocol import ActorStatus, PauseResult, RestartResult, ResumeResult
from osiris_core.runtime.lifecycle import Lifecycle
from osiris_core.runtime.slots import Slots

__all__ = ["CellView", "ControlledCell"]


class CellView(Protocol):
    """The running state requests and events are served from, and the counters they move."""

    name: str
    node: str
    bus: Bus
    config: PluginConfig
    log: logging.Logger
    lifecycle: Lifecycle
    ready: asyncio.Event
    actor: Actor[Any] | None
    slots: Slots
    tasks: set[asyncio.Task[Any]]
    metrics: ActorMetrics
    in_flight: int
    active: int
    handled: int
    errors: int
    last_error: str | None
    last_used: float | None

    def begin_activity(self) -> None: ...

    def end_activity(self) -> None: ...

    def activity(self) -> AbstractAsyncContextManager[None]: ...

    def crash(self, exc: BaseException) -> None:
        """The actor is unhealthy: restart it (with backoff)."""


class ControlledCell(Protocol):
    """What the control subject's ops reach: status, and the cell's own operator ops."""

    name: str
    node: str
    bus: Bus
    log: logging.Logger
    lifecycle: Lifecycle
    actor: Actor[Any] | None
    tasks: set[asyncio.Task[Any]]

    def status(self) -> ActorStatus: ...

    async def pause(self, *, force: bool = False, timeout: float = 30.0) -> PauseResult: ...

    async def resume(self) -> ResumeResult: ...

    async def restart(self) -> RestartResult: ...
