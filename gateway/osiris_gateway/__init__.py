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
from osiris_core.nats.grants import NatsGrant

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


@hookimpl
def register_nats_role(register: Any) -> None:
    """This plugin's NATS user and what it calls (`osiris nats-config`)."""
    from osiris_contracts.subjects import (
        FEEDBACK_SUBMIT,
        HERMES_GENERATE,
        PHI3_GENERATE,
        PROPOSALS_PROPOSE,
        STORE_QUERY,
        TTS_SPEAK,
    )

    register(NatsGrant(
        "gateway", gathers=True, reads_events=True, cancels=True,
        requests=tuple(s.name for s in (HERMES_GENERATE, PHI3_GENERATE, PROPOSALS_PROPOSE,
                                        FEEDBACK_SUBMIT, TTS_SPEAK, STORE_QUERY)),
        description="HTTP/SSE edge: generation, proposals, feedback, speech, store rows (the "
                    "desk), /health, /events"))
