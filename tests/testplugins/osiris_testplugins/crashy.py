"""An actor that crashes on demand, and a steady neighbour, for supervision tests."""

from __future__ import annotations

import os
from typing import Any

import msgspec

from osiris_core import Actor, ActorFatal, BadRequest, hookimpl, service


class CrashRequest(msgspec.Struct):
    crash: bool = False
    """Raise an ordinary exception: this request fails (500), the actor keeps running."""
    fatal: bool = False
    """Raise ActorFatal: the request fails and the actor restarts."""
    refuse: bool = False


STARTS: list[int] = []  # instances started in this process (a restart makes a new one)


class CrashyActor(Actor[Any]):
    name = "crashy"

    async def on_start(self) -> None:
        STARTS.append(id(self))

    @service("test.crashy.call")
    async def call(self, req: CrashRequest) -> dict[str, Any]:
        if req.refuse:
            raise BadRequest("refused on purpose", field="refuse")
        if req.fatal:
            raise ActorFatal("crash on purpose")
        if req.crash:
            raise RuntimeError("fail on purpose")
        return {"instance": id(self), "pid": os.getpid()}


class SteadyActor(Actor[Any]):
    name = "steady"

    @service("test.steady.call")
    async def call(self, req: None) -> dict[str, str]:
        return {"ok": "steady"}


@hookimpl
def register_actors(register: Any) -> None:
    register(CrashyActor)
    register(SteadyActor)
