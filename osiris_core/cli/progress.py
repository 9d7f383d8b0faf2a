"""Following a long job from the CLI: the progress line an actor reports in its status facts
(`facts["progress"]`), shown while the verb waits for the job's reply."""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
from collections.abc import AsyncIterator
from typing import TextIO

from osiris_core.nats.bus import Bus
from osiris_core.protocol import StatusOp

__all__ = ["ProgressLine", "following_progress"]

POLL_S = 1.0

COUNT = re.compile(r"\d+/\d+|\(\S+\)")
"""The counts within a progress line (and a name in brackets): not a new stage."""


class ProgressLine:
    """An actor's progress as one line, `"<label>: <line>"`: rewritten in place on a
    terminal (cut to its width, since a wrapped line cannot be rewritten); elsewhere (a pipe,
    a log) a line only when the stage changes, not per count ("phi3 replies 3/40")."""

    def __init__(self, label: str, stream: TextIO, tty: bool | None = None) -> None:
        self.label = label
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self.seen = ""
        self.stage = ""
        self.width = 0

    def show(self, line: str) -> None:
        if not line or line == self.seen:
            return
        self.seen = line
        text = f"{self.label}: {line}"
        if self.tty:
            text = text[: shutil.get_terminal_size().columns - 1]
            self.stream.write("\r" + text.ljust(self.width))
            self.width = len(text)
        else:
            stage = COUNT.sub("", line)
            if stage == self.stage:
                return
            self.stage = stage
            self.stream.write(text + "\n")
        self.stream.flush()

    def done(self) -> None:
        """End the line on a terminal (the verb's own output starts on a fresh one)."""
        if self.tty and self.width:
            self.stream.write("\n")
            self.stream.flush()
            self.width = 0


@contextlib.asynccontextmanager
async def following_progress(bus: Bus, actor: str, stream: TextIO, *,
                             poll_s: float = POLL_S) -> AsyncIterator[ProgressLine]:
    """`async with following_progress(bus, "trainer", sys.stderr):` — while the block runs
    (typically a long request to `actor`), ask `actor` for its status every `poll_s` and show
    its `progress` fact as a `ProgressLine` labelled with the actor's name. A status that
    fails is skipped: progress is a courtesy, the job's own reply decides."""
    line = ProgressLine(actor, stream)

    async def follow() -> None:
        while True:
            await asyncio.sleep(poll_s)
            try:
                reply = await bus.control(actor, StatusOp(), timeout=5)
            except Exception:  # noqa: BLE001 - progress is a courtesy
                continue
            line.show(str(reply.status.facts.get("progress") or ""))

    task = asyncio.ensure_future(follow())
    try:
        yield line
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        line.done()
