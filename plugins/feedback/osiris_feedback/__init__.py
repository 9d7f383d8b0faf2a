"""osiris-feedback: durable feedback intake (`osiris.feedback.submit`), the single writer of
the LanceDB tables `feedback`, `proposals`, `orchestrator_runs`, `advice` (fed by JetStream
durable consumers), `osiris.store.query`, and the `osiris db` verbs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from osiris_contracts.subjects import register_subjects as register_subjects
from osiris_core import hookimpl
from osiris_core.nats.grants import NatsGrant

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


@hookimpl
def register_nats_role(register: Any) -> None:
    """This plugin's NATS user and what it calls (`osiris nats-config`)."""
    register(NatsGrant("feedback", description="the store: every durable stream's writer"))


@hookimpl
def register_demo(register: Any) -> None:
    """Nothing to prepare; the demo suggests reading the run log."""
    register(lambda data_dir: {}, hints=[("db query-runs", "the orchestrator's run log (LanceDB)")])
