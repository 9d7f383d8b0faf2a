"""The whole plugin surface of osiris: every hook a plugin may implement.

Hooks only *wire things up*: they register actors, subjects, config, routes and CLI
commands, and return at once. They never do I/O and never await: anything async belongs in
an actor. Each hook is called once per plugin, with a `register` callback bound to that
plugin, so a plugin that raises is reported by name and skipped while the others load.
A hookimpl may accept any subset of the arguments below.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click

    from osiris_core.actor import Actor
    from osiris_core.config import PluginConfig
    from osiris_core.nats.grants import NatsGrant
    from osiris_core.subjects import Subject

__all__ = ["PROJECT", "hookimpl", "hookspec"]

PROJECT = "osiris"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_hookspecs(register: Callable[[ModuleType], None]) -> None:
    """Offer hooks of this plugin's own to other plugins.

    Called when the plugin set is loaded, before any plugin's hooks are checked. Call
    `register(module)` with a module of `@hookspec` functions (marker `hookspec` of this
    module). A plugin implementing another plugin's hook marks it
    `@hookimpl(optionalhook=True)`, so it still loads where that plugin is not enabled.
    Returns nothing.
    """


@hookspec
def register_config(register: Callable[[type[PluginConfig]], None]) -> None:
    """Declare the Struct that validates this plugin's `[plugins.<name>]` table.

    Called when the plugin set is loaded, before any actor is built. Call
    `register(MyConfig)` once with a frozen subclass of `osiris_core.PluginConfig`. A plugin
    that registers nothing gets `PluginConfig` itself (so unknown keys still fail). Returns
    nothing.
    """


@hookspec
def register_subjects(register: Callable[[Subject], None]) -> None:
    """Add this plugin's subjects (services and events) to the catalogue.

    Called when the plugin set is loaded. Call `register(Subject(...))` for each subject
    the plugin serves or publishes that the core catalogue does not already hold. Durable
    event subjects get a JetStream stream declared by the runtime. Returns nothing.
    """


@hookspec
def register_actors(register: Callable[[type[Actor[Any]]], None], config: PluginConfig) -> None:
    """Register the actor classes this plugin runs.

    Called when a runtime is built (`osiris run`, `osiris demo`, the test fixtures), after
    `register_config`, with this plugin's validated config so the plugin may choose which
    actors to register. Call `register(MyActor)` per class; the framework instantiates,
    starts, supervises and stops them. Returns nothing.
    """


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add CLI verbs to `osiris`.

    Called once when the `osiris` command starts, for every enabled plugin. Attach commands
    with `@cli.command()` or `cli.add_command(...)`. A verb that talks to a running system
    takes `-c FILE` with `osiris_core.cli.pass_config` and reaches the bus with
    `async with osiris_core.cli.connected_bus(config) as bus:`. Returns nothing.
    """


@hookspec
def register_demo(register: Callable[[Callable[..., dict[str, Any]]], None]) -> None:
    """Prepare this plugin for `osiris demo` (models, a synthetic CSV …).

    Called once when `osiris demo` starts, before the runtime is built. Call
    `register(prepare)` with a function `prepare(data_dir) -> dict`, or
    `prepare(data_dir, options) -> dict` to receive the user's `osiris_core.ops.demo.DemoOptions`
    (`options.tiny`: `--tiny` asks for the tiny models instead of the small one), that the demo runs
    (synchronously, in order, with its own progress output): it creates what the plugin needs
    under `data_dir` when absent (re-runs are no-ops) and returns settings for this plugin's
    `[plugins.<name>]` table, e.g. `{"model": str(data_dir / "models" / "phi3-onnx")}`.
    `register(prepare, hints=[("train --now", "what it shows"), …])` also lists `osiris`
    command lines the demo suggests once this plugin's actors run; a hint holding
    `{gateway}` is a shell line against the gateway (its URL put in), shown while it runs.
    Returns nothing.
    """


@hookspec
def register_nats_role(register: Callable[[NatsGrant], None], config: PluginConfig) -> None:
    """Say what this plugin's processes need of NATS beyond serving their own actors.

    Called by `osiris nats-config` with this plugin's validated config. Call
    `register(NatsGrant(role=..., requests=..., controls=..., publishes=..., ...))` once
    (`osiris_core.nats.grants.NatsGrant`): the NATS user it runs as (plugins naming the same
    role share one), the services of other plugins it calls, the actors it controls, the
    configured channels it publishes or reads, the KV buckets it shares. What its actors
    serve, consume and own comes from their handlers and the catalogue, not from here. A
    plugin that registers nothing gets no user. Returns nothing.
    """


@hookspec
def register_routes(register: Callable[[Any], None]) -> None:
    """Contribute HTTP routes to the gateway.

    Called when the gateway app is created. Call `register(handler_or_router)` with Litestar
    route handlers, controllers or routers; they are mounted next to the built-in routes and
    must map HTTP to bus subjects, holding no business logic: a handler reaches the bus with
    `await request.app.state.gw.call(request, actor, subject, payload, reply_type=...)`.
    Returns nothing.
    """
