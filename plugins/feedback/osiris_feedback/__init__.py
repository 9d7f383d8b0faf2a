"""osiris-feedback: durable feedback intake (`osiris.feedback.submit`), the single writer of
the LanceDB tables `feedback`, `proposals`, `orchestrator_runs`, `advice` (fed by JetStream
durable consumers), `osiris.store.query`, and the `osiris db` verbs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from osiris_core import hookimpl

from .actor import FeedbackActor
from .config import FeedbackConfig


@hookimpl
def register_config(register: Callable[[type[FeedbackConfig]], None]) -> None:
    register(FeedbackConfig)


@hookimpl
def register_actors(register: Callable[[type[Any]], None]) -> None:
    register(FeedbackActor)


@hookimpl
def register_commands(cli: click.Group) -> None:
    from .cli import db

    cli.add_command(db)
