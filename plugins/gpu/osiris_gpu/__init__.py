"""osiris-gpu: the `gpu` supervisor actor. It keeps the model actors inside a VRAM budget by
pausing the least-recently-used idle ones and resuming a paused one when a request wants it,
instead of restarting the service (`osiris.gpu.status`, `osiris.gpu.events`)."""

from __future__ import annotations

from typing import Any

from osiris_contracts.subjects import register_subjects as register_subjects
from osiris_core import hookimpl
from osiris_core.nats.grants import NatsGrant

from .config import GpuConfig

__all__ = ["GpuConfig"]


@hookimpl
def register_config(register: Any) -> None:
    register(GpuConfig)


@hookimpl
def register_actors(register: Any) -> None:
    from .actor import GpuSupervisor

    register(GpuSupervisor)


@hookimpl
def register_nats_role(register: Any) -> None:
    """This plugin's NATS user and what it calls (`osiris nats-config`)."""
    register(NatsGrant("gpu", gathers=True, controls=("hermes", "phi3", "tts"),
                       description="VRAM budget: pauses and resumes the model actors"))
