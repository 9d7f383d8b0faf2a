"""osiris core: the minimal runtime every plugin builds on.

The names in `__all__` are the public API; everything else is internal.
"""

from __future__ import annotations

from .actor import Actor, ActorContext, EventMeta, RequestContext, State, on_event, service
from .bus import Bus
from .config import Config, OsirisSettings, PluginConfig, load_config
from .dispatch import reply_budget
from .errors import (
    ActorFatal,
    BadRequest,
    ConfigError,
    InvalidField,
    NoResponders,
    NotFound,
    OsirisError,
    PayloadTooLarge,
    RequestTimeout,
    ServiceError,
    Unavailable,
)
from .hookspecs import hookimpl
from .runtime import Runtime
from .subjects import Subject

__all__ = [
    "Actor",
    "ActorContext",
    "ActorFatal",
    "BadRequest",
    "Bus",
    "Config",
    "ConfigError",
    "EventMeta",
    "InvalidField",
    "NoResponders",
    "NotFound",
    "OsirisError",
    "OsirisSettings",
    "PayloadTooLarge",
    "PluginConfig",
    "RequestContext",
    "RequestTimeout",
    "Runtime",
    "ServiceError",
    "State",
    "Subject",
    "Unavailable",
    "hookimpl",
    "load_config",
    "on_event",
    "reply_budget",
    "service",
]
