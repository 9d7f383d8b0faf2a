"""osiris core: the minimal runtime every plugin builds on.

The names in `__all__` are the public API; everything else is internal.
"""

from __future__ import annotations

from osiris_core.actor import (
    Actor,
    ActorContext,
    EventMeta,
    RequestContext,
    State,
    control_op,
    on_event,
    service,
)
from osiris_core.config import Config, OsirisSettings, PluginConfig, load_config
from osiris_core.errors import (
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
from osiris_core.hookspecs import hookimpl
from osiris_core.moved import install as _install_moved
from osiris_core.nats.bus import Bus
from osiris_core.runtime.dispatch import reply_budget
from osiris_core.runtime.node import Runtime
from osiris_core.subjects import Subject

_install_moved()  # the old flat module paths keep importing, with a DeprecationWarning

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
    "control_op",
    "hookimpl",
    "load_config",
    "on_event",
    "reply_budget",
    "service",
]
