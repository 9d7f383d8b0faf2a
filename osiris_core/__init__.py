"""osiris core: the minimal runtime every plugin builds on.

The names in `__all__` are the public API; everything else is internal.
"""

from __future__ import annotations

from .actor import Actor, ActorContext, EventMeta, RequestContext, State, on_event, service
from .bus import Bus
from .config import Config, OsirisSettings, PluginConfig, load_config
from .errors import (
    BadRequest,
    ConfigError,
    NotFound,
    OsirisError,
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
    "BadRequest",
    "Bus",
    "Config",
    "ConfigError",
    "EventMeta",
    "NotFound",
    "OsirisError",
    "OsirisSettings",
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
    "service",
]
