"""`osiris train [--now] [--force] [--json]`: the trainer's schedule and last run, or a run now."""

from __future__ import annotations

import json
import sys
from typing import Any

import click
import msgspec

from osiris_core.cli import config_option, following_progress, get_config, run_with_bus
from osiris_core.nats.bus import Bus
from osiris_core.protocol import StatusOp

from .config import TrainerConfig
from .contracts import TRAINER_TRAIN, TrainRequest, TrainResult
from .served import served_table


async def _status(bus: Bus) -> dict[str, Any]:
    return (await bus.control("trainer", StatusOp(), timeout=5)).status.facts


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

    async def go(bus: Bus) -> Any:
        if not now:
            return await _status(bus)
        async with following_progress(bus, "trainer", sys.stderr):
            res: TrainResult = await bus.request(TRAINER_TRAIN, TrainRequest(force=force),
                                                 reply_type=TrainResult,
                                                 timeout=cfg.train_timeout_s)
            return res

    out = run_with_bus(config, go)
    if as_json:
        click.echo(json.dumps(msgspec.to_builtins(out), indent=2))
    elif isinstance(out, TrainResult):
        # the reason starts with its own verdict ("published: …" / "not published: …")
        verdict = f"published {out.version}" if out.published else "not published"
        reason = out.reason.removeprefix("published: ").removeprefix("not published: ")
        click.echo(f"{verdict}: {reason}")
        if out.report:
            click.echo(f"held-out ({out.eval_examples} corrections the run did not train on), "
                       "decision fields as phi3 serves them, 95 % intervals:")
            click.echo(served_table(out.report))
        click.echo("  time (s): " + ", ".join(f"{k} {v:.0f}" for k, v in out.phases_s.items()))
        if out.path:
            click.echo(f"  adapter          {out.path}")
    else:
        click.echo(f"schedule   {out.get('schedule') or 'off'} (next: {out.get('next_run')})")
        served = out.get("adapter_served_agreement")
        click.echo(f"adapter    {out.get('adapter_version') or 'none published yet'}"
                   + (f" (served held-out agreement {served['mean']:.0%} "
                      f"[{served['lo']:.0%}–{served['hi']:.0%}])" if served else ""))
        last = out.get("last_run")
        click.echo(f"last run   {last['finished']}: {last['reason']}" if last else
                   "last run   none yet (osiris train --now)")
    if isinstance(out, TrainResult) and not out.published:
        raise SystemExit(1)
