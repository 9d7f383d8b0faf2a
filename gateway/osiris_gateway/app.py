"""`create_app()`: the Litestar app. Routes map HTTP to bus subjects and hold no business
logic; the NATS connection is opened in the lifespan (or handed in by the gateway actor)."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator, Sequence
from typing import Any

import msgspec
from litestar import Controller, Litestar, Router
from litestar._openapi.plugin import OpenAPIPlugin
from litestar.config.cors import CORSConfig
from litestar.handlers.base import BaseRouteHandler
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin

from osiris_contracts.subjects import register_shared
from osiris_core.config import Config, OsirisSettings, load_config
from osiris_core.nats.bus import Bus
from osiris_core.nats.connection import open_connection
from osiris_core.observability import tracing
from osiris_core.observability.metrics import ProcessMetrics, metrics_enabled
from osiris_core.observability.sentry import init_sentry
from osiris_core.plugins import LoadedPlugins, load_plugins

from .config import GatewayConfig
from .controllers.debug import DebugController, profiling_enabled
from .controllers.desk import DeskController, StoreController
from .controllers.events import EventsController
from .controllers.generate import GenerateController
from .controllers.loop import FeedbackController, ProposalsController
from .controllers.openai import OpenAIController
from .controllers.ops import ActorsController, HealthController, MetricsController
from .controllers.voice import StaticController, VoiceController
from .errors import exception_handlers
from .metrics import metrics_middleware
from .security import api_key_middleware
from .state import GatewayState
from .tracing import tracing_middleware

__all__ = ["CONFIG_ENV", "create_app", "load_gateway_config", "plugin_routes"]

log = logging.getLogger("osiris.gateway")
CONFIG_ENV = "OSIRIS_CONFIG"
PLUGIN_NAME = "gateway"
VERSION = "0.1.0"

BUILTIN: tuple[type[Controller], ...] = (
    GenerateController, ProposalsController, FeedbackController, HealthController,
    ActorsController, VoiceController, StaticController, EventsController, OpenAIController,
    DeskController, StoreController,
)


_REF = "#/components/schemas/"
_TOKEN = {"type": "object", "required": ["text", "index"],
          "properties": {"text": {"type": "string"}, "index": {"type": "integer"}}}
_DONE = {"type": "object", "required": ["generated_text"],
         "properties": {"generated_text": {"type": "string"}, "usage": {"type": "object"}}}
_GEN_EVENT = {"description": "data of each event: a token, then `event: done` with the result "
                             "(or `event: error`)",
              "anyOf": [_TOKEN, _DONE, {"$ref": _REF + "TradeProposal"}, {"$ref": _REF + "ErrorBody"}]}
_CHAT_EVENT = {"description": "OpenAI chat.completion.chunk objects, then `[DONE]`",
               "anyOf": [{"type": "object", "required": ["id", "object", "choices"]},
                         {"type": "object", "required": ["error"]}, {"const": "[DONE]"},
                         {"type": "string"}]}


def _event(data: dict[str, Any]) -> dict[str, Any]:
    """One server-sent event (OpenAPI 3.2 style): `data` is JSON text described by `data`."""
    return {"type": "object", "required": ["data"], "properties": {
        "event": {"type": "string"}, "id": {"type": "string"},
        "data": {"type": "string", "contentMediaType": "application/json",
                 "contentSchema": data}}}


STREAMING_PATHS = {"/generate": _event(_GEN_EVENT), "/generate/hermes": _event(_GEN_EVENT),
                   "/generate/phi3": _event(_GEN_EVENT),
                   "/v1/chat/completions": _event(_CHAT_EVENT)}


def load_gateway_config(path: str | None = None) -> tuple[Config, GatewayConfig]:
    """osiris.toml (`path`, else $OSIRIS_CONFIG, else ./osiris.toml, else defaults)."""
    config = load_config(path or os.environ.get(CONFIG_ENV) or None)
    return config, config.plugin(PLUGIN_NAME, GatewayConfig)


def _is_route(obj: Any) -> bool:
    return isinstance(obj, BaseRouteHandler | Router) or (
        isinstance(obj, type) and issubclass(obj, Controller))


def plugin_routes(plugins: LoadedPlugins) -> list[Any]:
    """Route handlers, routers and controllers the enabled plugins register."""
    found: list[Any] = []

    def kwargs(rec: Any) -> dict[str, Any]:
        def register(obj: Any) -> None:
            if _is_route(obj):
                found.append(obj)
            else:
                log.warning("plugin %r registered %r as a route: not a Litestar handler, "
                            "controller or router; ignored", rec.name, obj)

        return {"register": register}

    plugins.call_each("register_routes", kwargs)
    return found


def create_app(
    config: GatewayConfig | None = None,
    *,
    settings: OsirisSettings | None = None,
    bus: Bus | None = None,
    plugins: LoadedPlugins | None = None,
    extra_routes: Sequence[Any] = (),
    process_metrics: ProcessMetrics | None = None,
) -> Litestar:
    """Build the gateway app. With no arguments it reads osiris.toml like `osiris run`
    (`$OSIRIS_CONFIG` or ./osiris.toml) and connects to `[osiris].nats_url` on startup.
    A `bus` handed in is used as it is and not closed (the gateway actor shares its own);
    `process_metrics` (the runtime's, from the gateway actor) are served on /metrics with the
    gateway's own."""
    if config is None or settings is None:
        loaded_cfg, gw_cfg = load_gateway_config()
        config = config or gw_cfg
        settings = settings or loaded_cfg.settings
    if plugins is None:
        plugins = load_plugins(list(settings.plugins) or None)
    register_shared(plugins.catalogue.add)  # the gateway serves the application's subjects
    state = GatewayState(config, settings, plugins.catalogue, bus, process_metrics)

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        if state.bus_given is not None:
            yield
            return
        # standalone (a granian worker): its own process, so its own Sentry, on this loop
        init_sentry()
        tracing.setup("osiris-gateway")
        nc = await open_connection(settings, name="osiris-gateway")
        state.bus = Bus(nc)
        try:
            yield
        finally:
            state.bus = None
            with contextlib.suppress(Exception):
                await nc.drain()

    cors = CORSConfig(allow_origins=list(config.cors_origins),
                      allow_headers=["Authorization", "Content-Type", "X-API-Key"],
                      allow_methods=["GET", "POST", "DELETE", "OPTIONS"]) \
        if config.cors_origins else None
    app = Litestar(
        route_handlers=[*BUILTIN, *([DebugController] if profiling_enabled() else []),
                        *([MetricsController] if metrics_enabled() is not False else []),
                        *plugin_routes(plugins), *extra_routes],
        lifespan=[lifespan],
        middleware=[*([tracing_middleware] if tracing.enabled() else []), metrics_middleware,
                    api_key_middleware],
        exception_handlers=exception_handlers,
        cors_config=cors,
        request_max_body_size=config.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="osiris gateway", version=VERSION, path="/schema",
            description="The seeds' REST/SSE surface and an OpenAI-compatible API, mapped to "
                        "NATS subjects of osiris actors.",
            render_plugins=[SwaggerRenderPlugin()],
        ),
        debug=False,
        logging_config=None,  # the runtime (or granian) owns logging
    )
    app.state.gw = state
    _exact_component_schemas(app)
    return app


def _struct_types() -> dict[str, type[msgspec.Struct]]:
    from osiris_contracts import messages as contracts

    from . import schemas
    from .controllers import voice

    found: dict[str, type[msgspec.Struct]] = {}
    for module in (contracts, schemas, voice):
        for obj in vars(module).values():
            if isinstance(obj, type) and issubclass(obj, msgspec.Struct) and obj.__module__ == module.__name__:
                found[obj.__name__] = obj
    return found


def _exact_component_schemas(app: Litestar) -> None:
    """Serve msgspec's own JSON Schema for our Structs: Litestar's translation drops bounds
    inside optional fields and never says `additionalProperties: false` for Structs that
    reject unknown fields, so clients (and schemathesis) would send what we refuse."""
    plugin = app.plugins.get(OpenAPIPlugin)
    doc = plugin.provide_openapi().to_schema()
    comps = doc.get("components", {}).get("schemas", {})
    types = _struct_types()
    wanted = [types[name] for name in comps if name in types]
    _, exact = msgspec.json.schema_components(wanted, ref_template="#/components/schemas/{name}")
    for name, schema in exact.items():
        comps[name] = schema
    for path, event in STREAMING_PATHS.items():  # `"stream": true` answers SSE
        ok = doc.get("paths", {}).get(path, {}).get("post", {}).get("responses", {}).get("200")
        if ok is not None and "TradeProposal" in comps and "ErrorBody" in comps:
            ok.setdefault("content", {})["text/event-stream"] = {"schema": event}
    plugin._openapi_schema = doc  # what /schema/openapi.json serves (Litestar caches it here)
