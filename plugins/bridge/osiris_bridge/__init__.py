"""osiris-bridge: mirrors the seeds' documented channels (`market.ticks`,
`phi3.proposal.created`, `phi3.proposal.assessed`, `phi3.feedback.submitted`,
`advice.generated`, `audio.bytes` as base64 WAV) between NATS and Redis pub/sub, per channel
and direction, without echo loops, reconnecting to Redis with backoff."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from osiris_contracts.subjects import register_subjects as register_subjects
from osiris_core import hookimpl
from osiris_core.nats.grants import NatsGrant

from .actor import BridgeActor
from .config import BridgeConfig


@hookimpl
def register_config(register: Callable[[type[BridgeConfig]], None]) -> None:
    register(BridgeConfig)


@hookimpl
def register_actors(register: Callable[[type[Any]], None]) -> None:
    register(BridgeActor)


@hookimpl
def register_nats_role(register: Any, config: BridgeConfig) -> None:
    """This plugin's NATS user and what it calls (`osiris nats-config`)."""
    ways = config.directions()
    register(NatsGrant(
        "bridge", publishes=tuple(c for c, d in ways.items() if d in ("both", "from_redis")),
        subscribes=tuple(c for c, d in ways.items() if d in ("both", "to_redis")),
        description="Redis mirror of the documented channels"))
