"""`osiris train [--now] [--force] [--json]`: the trainer's schedule and last run, or a run now."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import click
import msgspec

from osiris_core.bus import Bus
from osiris_core.cli import config_option, connected_bus, get_config, run_async
from osiris_core.protocol import ControlReply
from osiris_core.subjects import control

from .config import TrainerConfig
from .contracts import TRAINER_TRAIN, TrainRequest, TrainResult
from .evaluate import report_table

POLL_S = 1.0


async def _status(bus: Bus) -> dict[str, Any]:
    reply: ControlReply = await bus.request(control("trainer"), {"op": "status"},
                                            reply_type=ControlReply, timeout=5)
    return reply.status.facts


async def _follow(bus: Bus) -> None:
    """Print the trainer's progress lines while a run goes on (stderr)."""
    seen = None
    while True:
        await asyncio.sleep(POLL_S)
        try:
            line = (await _status(bus)).get("progress")
        except Exception:  # noqa: BLE001 - progress is a courtesy; the run's reply decides
            continue
        if line and line != seen:
            click.echo(f"trainer: {line}", err=True)
            seen = line


@click.command(name="train")
@config_option
@click.option("--now", is_flag=True, help="Train an adapter now instead of at the schedule.")
@click.option("--force", is_flag=True, help="With --now: train even without new corrections.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def train(config_path: str | None, now: bool, force: bool, as_json: bool) -> None:
    """The trainer's schedule and last run; --now trains from the feedback corrections and
    publishes the adapter to phi3 if it passes the held-out gate (exit 1 when not)."""
    config = get_config(config_path)
    cfg = config.plugin("trainer", TrainerConfig)

    async def go() -> Any:
        async with connected_bus(config) as bus:
            if not now:
                return await _status(bus)
            follow = asyncio.ensure_future(_follow(bus))
            try:
                res: TrainResult = await bus.request(TRAINER_TRAIN, TrainRequest(force=force),
                                                     reply_type=TrainResult,
                                                     timeout=cfg.train_timeout_s)
                return res
            finally:
                follow.cancel()

    out = run_async(go())
    if as_json:
        click.echo(json.dumps(msgspec.to_builtins(out), indent=2))
    elif isinstance(out, TrainResult):
        click.echo(("published " + str(out.version) if out.published else "not published")
                   + f": {out.reason}")
        if out.report:
            click.echo(f"held-out ({out.eval_examples} corrections the run did not train on):")
            click.echo(report_table(out.report))
        for k, v in out.metrics.items():
            click.echo(f"  {k:<16} {v:.4f}")
        if out.path:
            click.echo(f"  adapter          {out.path}")
    else:
        click.echo(f"schedule   {out.get('schedule') or 'off'} (next: {out.get('next_run')})")
        click.echo(f"adapter    {out.get('adapter_version') or 'none published yet'}")
        last = out.get("last_run")
        click.echo(f"last run   {last['finished']}: {last['reason']}" if last else
                   "last run   none yet (osiris train --now)")
    if isinstance(out, TrainResult) and not out.published:
        raise SystemExit(1)
