"""Serving the app: uvicorn (httptools) on the caller's loop for the gateway actor, granian
(uvloop, N workers) for the standalone `osiris gateway`. Never plain h11."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from typing import Any

import uvicorn

__all__ = ["EmbeddedServer", "bind", "serve_granian"]


def bind(host: str, port: int) -> socket.socket:
    """Bind and listen here, so a port in use fails loudly in the caller (uvicorn would
    `sys.exit` from inside a task)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise OSError(e.errno, f"gateway cannot listen on {host}:{port}: {e.strerror} "
                               "(set [plugins.gateway] host/port)") from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock


class EmbeddedServer(uvicorn.Server):
    """uvicorn on the running loop; signals stay with the osiris runtime."""

    def __init__(self, app: Any, sock: socket.socket, *, graceful_s: float = 10.0) -> None:
        config = uvicorn.Config(
            app, http="httptools", loop="none", ws="none", lifespan="on", log_config=None,
            access_log=False, timeout_graceful_shutdown=int(max(graceful_s, 1)),
            server_header=False, backlog=2048,
        )
        super().__init__(config)
        self.sock = sock

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def run_here(self) -> None:
        await self.serve(sockets=[self.sock])


def serve_granian(host: str, port: int, workers: int, config_path: str | None,
                  log_level: str = "INFO") -> None:
    """Blocking: granian (ASGI + lifespan, uvloop) with `create_app` as a factory in each
    worker; the config file travels through $OSIRIS_CONFIG."""
    from granian import Granian
    from granian.constants import Interfaces, Loops

    from osiris_core.observability.logs import granian_log_config

    from .app import CONFIG_ENV

    if config_path:
        os.environ[CONFIG_ENV] = os.path.abspath(config_path)
    Granian(
        "osiris_gateway.app:create_app", address=host, port=port, interface=Interfaces.ASGI,
        workers=max(workers, 1), loop=Loops.uvloop, factory=True, log_access=False,
        backlog=2048, log_dictconfig=granian_log_config(log_level),  # OSIRIS_LOG_FORMAT, each worker
    ).serve()
