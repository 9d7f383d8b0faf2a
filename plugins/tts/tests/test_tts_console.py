"""The audio console page in real headless Chromium: it plays the chunks of a streamed
utterance in order (read from `window.audioConsole`) and reconnects when the stream drops.

The page is served, and `audio.bytes` relayed as SSE, by a few lines of asyncio below — a
stand-in for the gateway, which owns `/stream/audio` (its own tests drive the page through
the real `/speak` and `/stream/audio`). The tts actor, NATS and the browser are real.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from osiris_tts import AUDIO_CONSOLE

from osiris_contracts.subjects import AUDIO_BYTES, TTS_SPEAK
from osiris_core import Config
from osiris_core.nats.bus import Bus

webdriver = pytest.importorskip("selenium.webdriver", reason="pip install osiris-tts[test]")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                                reason="needs Debian's chromium and chromium-driver")
SENTENCES = ["First point.", "Second point is longer.", "Third.", "And the fourth one."]


class SseRelay:
    """GET /static/audio_console.html and GET /stream/audio (audio.bytes as SSE)."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.port = 0
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for w in list(self.writers):
            w.close()
        await self.server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        try:
            path = (await reader.readline()).split()[1].decode()
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass
            if path.startswith("/static/audio_console.html"):
                body = AUDIO_CONSOLE.read_bytes()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n"
                             b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
                await writer.drain()
            elif path == "/stream/audio":
                await self._stream(writer)
            else:
                writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        except (ConnectionError, IndexError):
            pass
        finally:
            self.writers.discard(writer)
            writer.close()

    async def _stream(self, writer: asyncio.StreamWriter) -> None:
        queue: asyncio.Queue[bytes] = asyncio.Queue()

        async def forward(msg: Any) -> None:
            queue.put_nowait(msg.data)

        sub = await self.bus.nc.subscribe(str(AUDIO_BYTES), cb=forward)
        try:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                         b"Cache-Control: no-cache\r\n\r\nretry: 200\n\n")
            await writer.drain()
            while not writer.is_closing():
                writer.write(b"data: " + await queue.get() + b"\n\n")
                await writer.drain()
        finally:
            await sub.unsubscribe()


@pytest.fixture
def browser() -> Iterator[Any]:
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--autoplay-policy=no-user-gesture-required"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(options=opts, service=webdriver.ChromeService(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


async def until(driver: Any, expr: str, timeout: float = 20.0) -> Any:
    """Wait (off the event loop) until the JS expression is truthy; return its value."""
    from selenium.webdriver.support.ui import WebDriverWait

    def wait() -> Any:
        return WebDriverWait(driver, timeout, poll_frequency=0.05).until(
            lambda d: d.execute_script(f"return {expr}"),
            message=f"page never satisfied: {expr}")

    return await asyncio.to_thread(wait)


@contextlib.asynccontextmanager
async def relay(bus: Bus) -> AsyncIterator[SseRelay]:
    r = SseRelay(bus)
    await r.start()
    try:
        yield r
    finally:
        with contextlib.suppress(Exception):
            await r.stop()


async def test_console_plays_a_streamed_utterance_in_order_and_reconnects(
    osiris_config: Callable[..., Config], osiris_runtime: Any, bus: Bus, browser: Any
) -> None:
    config = osiris_config(plugins=["tts"], tables={"tts": {"engine": "espeak"}})
    async with osiris_runtime(config), relay(bus) as r:
        url = f"http://127.0.0.1:{r.port}/static/audio_console.html"
        await asyncio.to_thread(browser.get, url)
        assert await until(browser, "window.audioConsole.state === 'open'")

        await bus.request(TTS_SPEAK, {"text": " ".join(SENTENCES), "stream": True,
                                      "utterance_id": "page-1"}, reply_type=bytes)
        await until(browser, "window.audioConsole.completed.includes('page-1')", timeout=30)
        st = await asyncio.to_thread(browser.execute_script, "return window.audioConsole")
        played = [(p["utterance_id"], p["seq"]) for p in st["played"]]
        assert played == [("page-1", i) for i in range(len(SENTENCES))]
        assert [p["text"] for p in st["played"]] == SENTENCES
        starts = [s["at"] for s in st["scheduled"]]
        assert starts == sorted(starts) and len(set(starts)) == len(starts)
        assert st["errors"] == [] and st["skipped"] == [] and st["audioState"] == "running"
        assert await asyncio.to_thread(browser.execute_script,
                                       "return document.getElementById('conn').textContent") \
            == "open"

        # The stream drops: the page says so, and comes back on its own.
        await r.stop()
        assert await until(browser, "window.audioConsole.state !== 'open'")
        await r.start()  # same port
        assert await until(browser, "window.audioConsole.state === 'open' && "
                                    "window.audioConsole.connects === 2")
        await bus.request(TTS_SPEAK, {"text": "Back again.", "stream": True,
                                      "utterance_id": "page-2"}, reply_type=bytes)
        await until(browser, "window.audioConsole.completed.includes('page-2')", timeout=30)
