"""Gateway test fixtures: a real gateway (uvicorn on this loop, the production server of
the gateway actor) over a real nats-server, with real actors in an in-process runtime."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import httpx
import pytest
from osiris_gateway.app import create_app
from osiris_gateway.config import GatewayConfig
from osiris_gateway.server import EmbeddedServer, bind

from osiris_core.config import OsirisSettings
from osiris_core.plugins import load_plugins


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def serve(nats_url: str, *, plugins: Sequence[str] = (), extra_routes: Sequence[Any] = (),
                **overrides: Any) -> AsyncIterator[str]:
    """A gateway app (own NATS connection, opened in its lifespan) on a free port."""
    cfg = GatewayConfig(**{"port": 0, **overrides})
    settings = OsirisSettings(nats_url=nats_url, plugins=list(plugins))
    app = create_app(cfg, settings=settings, plugins=load_plugins(list(plugins)),
                     extra_routes=extra_routes)
    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = EmbeddedServer(app, sock, graceful_s=1)
    task = asyncio.get_running_loop().create_task(server.run_here())
    try:
        async with asyncio.timeout(10):
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        try:
            async with asyncio.timeout(5):
                await task
        except TimeoutError:
            task.cancel()


@pytest.fixture
def gateway() -> Callable[..., contextlib.AbstractAsyncContextManager[str]]:
    return serve


@contextlib.asynccontextmanager
async def client(url: str, **kw: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=url, timeout=30, **kw) as c:
        yield c


async def wait_for(predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Poll an async/sync predicate until truthy (the condition, not a duration)."""
    async with asyncio.timeout(timeout):
        while True:
            value = predicate()
            if asyncio.iscoroutine(value):
                value = await value
            if value:
                return value
            await asyncio.sleep(0.02)
