"""The `gateway` actor: serves the Litestar app inside `osiris run` on the runtime's loop."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from osiris_core import Actor
from osiris_core.config import OsirisSettings
from osiris_core.plugins import load_plugins

from .config import GatewayConfig
from .server import EmbeddedServer, bind

__all__ = ["GatewayActor"]


class GatewayActor(Actor[GatewayConfig]):
    name = "gateway"
    description = "HTTP/SSE gateway (Litestar): the seeds' REST surface and an OpenAI API"
    exposes_metrics = True  # /metrics serves this process's actors too

    async def on_start(self) -> None:
        from .app import create_app

        cfg = self.config
        # Routes of every installed plugin (OSIRIS_LOAD_PLUGINS narrows them): the actor
        # cannot see the runtime's plugin list, and a route without its actor answers 503.
        plugins = load_plugins(None)
        self.app = create_app(cfg, settings=OsirisSettings(), bus=self.ctx.bus, plugins=plugins,
                              process_metrics=self.ctx.metrics)
        sock = bind(cfg.host, cfg.port)
        self.port = sock.getsockname()[1]
        self.server = EmbeddedServer(self.app, sock)
        self.task = self.spawn(self.server.run_here(), "http")
        while not self.server.started:
            if self.task.done():
                self.task.result()
                raise RuntimeError("gateway server stopped during startup")
            await asyncio.sleep(0.005)
        self.log.info("gateway: http://%s:%d (openapi at /schema)", cfg.host, self.port)

    async def on_stop(self) -> None:
        server = getattr(self, "server", None)
        if server is None:
            return
        server.should_exit = True
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(asyncio.shield(self.task), 15.0)
        if not self.task.done():
            server.force_exit = True
            self.task.cancel()

    def facts(self) -> dict[str, Any]:
        gw = self.app.state.gw if hasattr(self, "app") else None
        return {
            "url": f"http://{self.config.host}:{getattr(self, 'port', self.config.port)}",
            "sse_subscriptions": gw.sse_subs if gw is not None else 0,
            "auth": bool(self.config.api_key),
        }
