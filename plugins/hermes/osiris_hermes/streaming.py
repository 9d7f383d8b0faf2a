"""One generation's tokens as text: decoded as they arrive from the model's thread, cut at a
stop string, and published as `GenerateChunk`s when the caller streams."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import msgspec

from osiris_contracts.messages import GenerateChunk

from .batching import call_soon
from .engine import HermesEngine

_encode = msgspec.json.Encoder().encode


class TokenStream:
    """The text of one request so far. The model's thread calls `on_token`; `pump` (a task
    on the event loop) turns the tokens into text and sends each new piece; `finish` sends
    what is left once the model is done.

    A piece goes out only when it cannot change any more: a partial UTF-8 character and the
    last `len(longest stop string) - 1` characters (a stop string may be starting) are held
    back until the next token decides them."""

    def __init__(self, engine: HermesEngine, nc: Any, stream_to: str | None,
                 stops: list[str], stop_flag: threading.Event) -> None:
        self.engine, self.nc, self.stream_to, self.stop_flag = engine, nc, stream_to, stop_flag
        self.stops = [s for s in stops if s]
        self.hold = max((len(s) for s in self.stops), default=1) - 1
        self.new_ids: list[int] = []
        self.sent = ""
        self.chunks = 0
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[int | None] = asyncio.Queue()

    def on_token(self, t: int) -> None:
        """From the model's thread: one new token."""
        call_soon(self.loop, self.queue.put_nowait, t)

    def close(self) -> None:
        """The model is done: `pump` ends after the tokens already queued."""
        self.queue.put_nowait(None)

    def cut(self, text: str) -> tuple[str, bool]:
        """`text` up to the first stop string, and whether one was found."""
        hits = [text.find(s) for s in self.stops if s in text]
        return (text[: min(hits)], True) if hits else (text, False)

    async def emit(self, piece: str) -> None:
        if piece and self.stream_to:
            await self.nc.publish(self.stream_to,
                                  _encode(GenerateChunk(text=piece, index=self.chunks)))
            self.chunks += 1
        self.sent += piece

    async def pump(self) -> None:
        while (t := await self.queue.get()) is not None:
            self.new_ids.append(t)
            text, stopped = self.cut(self.engine.decode(self.new_ids))
            if stopped:
                self.stop_flag.set()  # the model's thread ends this row
            safe = text if stopped else text[: max(0, len(text) - self.hold)]
            if safe.endswith("\ufffd"):
                continue
            if safe.startswith(self.sent) and len(safe) > len(self.sent):
                await self.emit(safe[len(self.sent):])

    async def finish(self, out: list[int]) -> str:
        """The whole text of the model's tokens `out`; sends what was held back."""
        text, _ = self.cut(self.engine.decode(out))
        if text.startswith(self.sent):
            await self.emit(text[len(self.sent):])
        return text


__all__ = ["TokenStream"]
