"""The bounded concurrency of one actor: `max_concurrency` handlers run at once.

An `asyncio.Semaphore` with a cheap uncontended path: taking a free slot is a counter
decrement (no `any()` over the waiters, no coroutine), which is what almost every request
does; only a request that finds every slot taken awaits, first come first served.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from types import TracebackType

__all__ = ["Slots"]


class Slots:
    """`max_concurrency` slots; `take()` (sync, when one is free) or `await acquire()`."""

    __slots__ = ("_free", "_waiters")

    def __init__(self, n: int) -> None:
        if n < 1:
            raise ValueError("max_concurrency must be at least 1")
        self._free = n
        self._waiters: deque[asyncio.Future[None]] = deque()

    def take(self) -> bool:
        """Take a free slot now; False when the caller must `await acquire()`."""
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return True
        return False

    async def acquire(self) -> None:
        """Wait for a slot (in arrival order). Cancelled while waiting: no slot is held."""
        if self.take():
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.cancelled():  # still waiting: leave the queue
                with contextlib.suppress(ValueError):
                    self._waiters.remove(fut)
            else:  # handed a slot as it was cancelled: pass it on
                self.release()
            raise

    def release(self) -> None:
        """Give the slot to the first live waiter, or back to the pool."""
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return
        self._free += 1

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self.release()
