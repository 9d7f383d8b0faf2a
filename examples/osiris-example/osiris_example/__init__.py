"""An example third-party osiris plugin, installed like any other package.

It contributes one actor, `example`, with
- a service `osiris.example.echo` (request-reply, typed by msgspec Structs), and
- a durable event handler on `example.recorded` that writes each event into a SQLite
  ledger exactly once (idempotent by the event's `Nats-Msg-Id`), surviving `kill -9`.

It also gives the dgm kernel a planner, `example-tighten` (`osiris dgm --planner
example-tighten`). Enable it with `plugins = [..., "example"]` in osiris.toml.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from osiris_core import Subject, hookimpl

from .actor import ExampleActor, ExampleConfig, Recorded
from .contracts import EchoReply, EchoRequest

ECHO = Subject("osiris.example.echo", "service", "example", EchoRequest, EchoReply,
               description="echo a text back, upper-cased on request")
RECORDED = Subject("example.recorded", "event", "example", Recorded, durable=True,
                   description="an event the example ledger records exactly once")


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
def register_planners(register: Callable[[str, Callable[..., Any]], None]) -> None:
    from .planner import tighten

    register("example-tighten", tighten)
