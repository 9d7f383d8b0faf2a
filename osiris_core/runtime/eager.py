"""Starting a request's coroutine at once, in the subscription's callback, and making it a
task only if it suspends: what Python 3.12's eager tasks do, for 3.11.

Most requests of a fast handler never suspend (decode, call, encode, publish into the
connection's buffer), so they cost neither a Task nor a trip through the event loop; a
request that waits (a slot, a model, I/O) continues as an ordinary task from where it
stopped. Each request runs in a copy of the caller's context either way. One difference from
a task: before its first suspension, `asyncio.current_task()` is the subscription's task.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Coroutine, Generator
from typing import Any

__all__ = ["start_eagerly"]


def start_eagerly(loop: asyncio.AbstractEventLoop,
                  coro: Coroutine[Any, Any, None]) -> asyncio.Task[None] | None:
    """Run `coro` until it first suspends. None when it finished (its exception, if any,
    raised here); else the task that runs the rest."""
    ctx = contextvars.copy_context()
    try:
        pending = ctx.run(coro.send, None)
    except StopIteration:
        return None
    return loop.create_task(_rest(coro, pending), context=ctx)


class _Continue:
    """Awaitable that hands the started coroutine's pending future to the task, then drives
    the coroutine on: `yield from` by hand, since the coroutine is already started."""

    __slots__ = ("coro", "pending")

    def __init__(self, coro: Coroutine[Any, Any, None], pending: Any) -> None:
        self.coro, self.pending = coro, pending

    def __await__(self) -> Generator[Any, Any, None]:
        pending = self.pending
        while True:
            try:
                value = yield pending
            except BaseException as exc:  # noqa: BLE001 - cancellation goes to the coroutine
                try:
                    pending = self.coro.throw(exc)
                except StopIteration:
                    return
                continue
            try:
                pending = self.coro.send(value)
            except StopIteration:
                return


async def _rest(coro: Coroutine[Any, Any, None], pending: Any) -> None:
    await _Continue(coro, pending)
