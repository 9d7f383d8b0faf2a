"""Requests that wait for the model run together. When a generation slot frees, one batch
takes the waiting requests that share the first one's sampling settings (up to
`batch_size`, first come first served) into a single generation: one forward pass per step
for all of them, so a busy replica serves several requests in about the time of one. Each
request is answered as soon as its own row finishes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from osiris_core.errors import Unavailable

from .engine import Row

RunBatch = Callable[[list[Row], Hashable], None]
"""Generates for the rows (in a worker thread), finishing each; all share the key."""
Fits = Callable[[list[Row]], bool]
"""Whether rows can run as one batch (e.g. the longest prompt plus the largest
`max_new_tokens` within the model's context: every row runs that many positions)."""


@dataclass(eq=False)
class _Job:
    row: Row
    key: Hashable
    future: asyncio.Future[list[int]]


class Batcher:
    """Runs `run` over batches of waiting rows, at most one batch per free slot of `slots`
    (whoever holds every slot, e.g. an adapter swap, holds generation off)."""

    def __init__(self, run: RunBatch, slots: asyncio.Semaphore, parallel: int,
                 size: int, fits: Fits | None = None) -> None:
        self.run, self.slots, self.fits = run, slots, fits
        self.parallel, self.size = max(1, parallel), max(1, size)
        self.waiting: list[_Job] = []
        self.runners = 0
        self.tasks: set[asyncio.Task[None]] = set()
        self.batches = 0
        self.rows = 0
        self.largest = 0

    async def submit(self, row: Row, key: Hashable) -> list[int]:
        """Queue `row` and wait for its new token ids. Cancelling the caller stops the row
        (or takes it off the queue); the batch it is in goes on for the others."""
        loop = asyncio.get_running_loop()
        job = _Job(row, key, loop.create_future())
        row.on_done = lambda r: call_soon(loop, _resolve, job.future, r.out)
        self.waiting.append(job)
        self._kick()
        try:
            return await job.future
        except asyncio.CancelledError:
            row.stop_flag.set()
            if job in self.waiting:
                self.waiting.remove(job)
            raise

    def facts(self) -> dict[str, int | float]:
        return {"batches": self.batches, "batch_rows": self.rows, "batch_largest": self.largest,
                "batch_mean": round(self.rows / self.batches, 2) if self.batches else 0.0,
                "batch_waiting": len(self.waiting)}

    def _kick(self) -> None:
        if self.waiting and self.runners < self.parallel:
            self.runners += 1
            task = asyncio.get_running_loop().create_task(self._drain(), name="hermes-batch")
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _drain(self) -> None:
        try:
            while self.waiting:
                async with self.slots:
                    batch = self._take()
                    if batch:
                        await self._execute(batch)
        finally:
            self.runners -= 1
            self._kick()  # a request may have come in as this runner left

    def _take(self) -> list[_Job]:
        """The first waiting job and the later ones with its key that fit with it, up to
        `size`; jobs whose caller left or cancelled meanwhile are dropped."""
        batch: list[_Job] = []
        for job in list(self.waiting):
            if job.future.done():
                self.waiting.remove(job)
            elif job.row.stop_flag.is_set():
                self.waiting.remove(job)
                job.future.set_exception(
                    Unavailable("request cancelled by the caller before it started"))
            elif not batch or (len(batch) < self.size and job.key == batch[0].key
                               and self._fit(batch, job)):
                self.waiting.remove(job)
                batch.append(job)
        return batch

    def _fit(self, batch: list[_Job], job: _Job) -> bool:
        return self.fits is None or self.fits([j.row for j in batch] + [job.row])

    async def _execute(self, batch: list[_Job]) -> None:
        self.batches += 1
        self.rows += len(batch)
        self.largest = max(self.largest, len(batch))
        try:
            await asyncio.to_thread(self.run, [j.row for j in batch], batch[0].key)
        except Exception as e:  # every row still open gets the cause (finished ones kept theirs)
            for job in batch:
                if not job.future.done():
                    job.future.set_exception(e)


def _resolve(future: asyncio.Future[list[int]], out: list[int]) -> None:
    if not future.done():
        future.set_result(out)


def call_soon(loop: asyncio.AbstractEventLoop, fn: Callable[..., object], *args: object) -> None:
    """`loop.call_soon_threadsafe` from the generating thread; a loop already closed (the
    process is ending) has nobody left to tell, and must not abort the batch's other rows."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(fn, *args)


__all__ = ["Batcher", "Fits", "RunBatch", "call_soon"]
