"""osiris-bridge: mirrors the seeds' documented channels (`market.ticks`,
`phi3.proposal.created`, `phi3.proposal.assessed`, `phi3.feedback.submitted`,
`advice.generated`, `audio.bytes` as base64 WAV) between NATS and Redis pub/sub, per channel
and direction, without echo loops, reconnecting to Redis with backoff."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from osiris_core import hookimpl

from .actor import BridgeActor
from .config import BridgeConfig


@hookimpl
def register_config(register: Callable[[type[BridgeConfig]], None]) -> None:
    register(BridgeConfig)


@hookimpl
def register_actors(register: Callable[[type[Any]], None]) -> None:
    register(BridgeActor)
