"""osiris-sim: replays an OHLCV CSV onto `market.ticks` (actor and `osiris sim` verb) and
makes synthetic market data (`osiris sim make-data`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from osiris_contracts.subjects import register_subjects as register_subjects
from osiris_core import hookimpl
from osiris_core.nats.grants import NatsGrant

from .actor import SimActor
from .config import SimConfig

DEMO_BARS = 2000
DEMO_SEED = 7


@hookimpl
def register_config(register: Callable[[type[SimConfig]], None]) -> None:
    register(SimConfig)


@hookimpl
def register_actors(register: Callable[[type[Any]], None]) -> None:
    register(SimActor)


@hookimpl
def register_commands(cli: click.Group) -> None:
    from .cli import sim

    cli.add_command(sim)


def prepare_demo(data_dir: Path) -> dict[str, Any]:
    """A synthetic hourly CSV under data_dir, replayed at one bar a second, looping."""
    from .csvdata import make_data

    path = Path(data_dir) / "market" / "sim.csv"
    if not path.exists():
        make_data(path, bars=DEMO_BARS, seed=DEMO_SEED)
    return {"csv": str(path), "speed": "3600x", "loop": True, "start_delay_s": 2.0}


@hookimpl
def register_demo(register: Callable[[Callable[[Path], dict[str, Any]]], None]) -> None:
    register(prepare_demo)


@hookimpl
def register_nats_role(register: Any, config: SimConfig) -> None:
    """This plugin's NATS user and what it calls (`osiris nats-config`)."""
    register(NatsGrant("sim", publishes=(config.channel,),
                       description="market replay on market.ticks"))
