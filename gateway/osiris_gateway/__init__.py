"""osiris gateway plugin: the seeds' REST/SSE surface and an OpenAI-compatible API on
Litestar, every route mapped to a bus subject.

Runs as the `gateway` actor inside `osiris run` (uvicorn+httptools on the runtime's loop,
`[plugins.gateway] host/port`, default 127.0.0.1:8000) or standalone with granian:
`osiris gateway` / `python -m osiris_gateway`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from osiris_core import hookimpl

from .actor import GatewayActor
from .app import create_app
from .config import GatewayConfig

__all__ = ["GatewayActor", "GatewayConfig", "create_app"]


@hookimpl
def register_config(register: Callable[[type[GatewayConfig]], None]) -> None:
    register(GatewayConfig)


@hookimpl
def register_actors(register: Callable[[type[Any]], None]) -> None:
    register(GatewayActor)


@hookimpl
def register_commands(cli: Any) -> None:
    from .cli import gateway_command

    cli.add_command(gateway_command)
