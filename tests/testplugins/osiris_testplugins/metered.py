"""An actor whose requests and durable events succeed, fail or crash on demand, for the
metrics tests (tests/test_metrics.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec

from osiris_core import Actor, ActorFatal, BadRequest, hookimpl, on_event, service
from osiris_core.observability.logctx import TRACE_ID
from osiris_core.observability.usage import record_tokens
from osiris_core.subjects import Subject


class MeterRequest(msgspec.Struct):
    refuse: bool = False
    """Raise BadRequest: a 400."""
    fatal: bool = False
    """Raise ActorFatal: a 500, and the actor restarts."""
    trace_id: str = ""
    """Set `logctx.TRACE_ID` while serving, as the tracing module does around a request."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    """Report a generation's tokens, as a model actor does."""


class MeterEvent(msgspec.Struct):
    n: int
    poison: bool = False
    """The handler fails on it every time: it ends up dead-lettered."""
    stall_s: float = 0.0
    """The handler takes this long over it (a stuck consumer)."""


METERED_CALL = Subject("test.metered.call", "service", "metered", MeterRequest, None,
                       description="answers {ok}; fails or crashes on demand")
METERED_EVENTS = Subject("test.metered.events", "event", "metered", MeterEvent, durable=True,
                         description="durable events; a poison one always fails")


class MeteredActor(Actor[Any]):
    name = "metered"

    @service(METERED_CALL)
    async def call(self, req: MeterRequest) -> dict[str, Any]:
        if req.trace_id:
            TRACE_ID.set(req.trace_id)  # this request's task only
        if req.refuse:
            raise BadRequest("refused on purpose", field="refuse")
        if req.fatal:
            raise ActorFatal("crash on purpose")
        if req.prompt_tokens or req.completion_tokens:
            record_tokens(req.prompt_tokens, req.completion_tokens)
        return {"ok": True}

    @on_event(METERED_EVENTS)
    async def take(self, evt: MeterEvent) -> None:
        if evt.stall_s:
            await asyncio.sleep(evt.stall_s)
        if evt.poison:
            raise RuntimeError(f"cannot digest event {evt.n}")


@hookimpl
def register_subjects(register: Any) -> None:
    register(METERED_CALL)
    register(METERED_EVENTS)


@hookimpl
def register_actors(register: Any) -> None:
    register(MeteredActor)
