"""An example third-party osiris plugin, installed like any other package.

It contributes one actor, `example`, with
- a service `osiris.example.echo` (request-reply, typed by msgspec Structs), and
- a durable event handler on `example.recorded` that writes each event into a SQLite
  ledger exactly once (idempotent by the event's `Nats-Msg-Id`), surviving `kill -9`.

It also adds the verbs `osiris example echo TEXT` and `osiris example status` (cli.py), the
gateway route `POST /example/echo` (routes.py) and a planner for the dgm kernel,
`example-tighten` (`osiris dgm --planner example-tighten`). Enable it with
`plugins = [..., "example"]` in osiris.toml.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from osiris_core import Subject, hookimpl
from osiris_core.nats.grants import NatsGrant

from .actor import ExampleActor, ExampleConfig
from .subjects import ECHO, RECORDED

__all__ = ["ECHO", "RECORDED"]


@hookimpl
def register_config(register: Callable[[type[ExampleConfig]], None]) -> None:
    register(ExampleConfig)


@hookimpl
def register_subjects(register: Callable[[Subject], None]) -> None:
    register(ECHO)
    register(RECORDED)


@hookimpl
def register_actors(register: Callable[[type[Any]], None]) -> None:
    register(ExampleActor)


@hookimpl
def register_commands(cli: click.Group) -> None:
    from .cli import example

    cli.add_command(example)


@hookimpl
def register_routes(register: Callable[[Any], None]) -> None:
    from .routes import echo_route  # litestar is there only where the gateway runs

    register(echo_route)


@hookimpl(optionalhook=True)  # the dgm plugin's hook: loads without dgm too
def register_planners(register: Callable[[str, Callable[..., Any]], None]) -> None:
    from .planner import tighten

    register("example-tighten", tighten)


@hookimpl
def register_nats_role(register: Callable[[NatsGrant], None]) -> None:
    """Its own NATS user in `osiris nats-config` (its actor calls nobody else)."""
    register(NatsGrant("example", description="the example plugin: echo"))
