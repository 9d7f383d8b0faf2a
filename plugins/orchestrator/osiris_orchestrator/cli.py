"""`osiris orchestrate ["query"]`: one workflow run now (or after N ticks), or, without a
query, the seeds' continuous mode (`--market_channel`, `--ticks_per_proposal`,
`--redis_url`): a run per N ticks, each printed."""

from __future__ import annotations

import asyncio
from typing import Any

import click
import msgspec

from osiris_core.cli import config_option, get_config, run_with_bus
from osiris_core.nats.bus import Bus

from .config import OrchestratorConfig
from .ticks import TickBuffer, redis_messages
from .workflow import RunResult, Workflow


def print_result(res: RunResult, as_json: bool) -> None:
    if as_json:
        click.echo(msgspec.json.encode(res).decode())
        return
    r = res.run
    click.echo(f"run {r.run_id}  status {r.status}  transaction {r.transaction_id}")
    for s in r.steps:
        tail = f"  ({s.error})" if s.error else ""
        click.echo(f"  {s.name:<18} {s.status:<8} {s.duration_ms:9.1f} ms{tail}")
    if res.phi3_proposal is not None:
        click.echo(f"proposal:   {msgspec.json.encode(res.phi3_proposal).decode()}")
    if res.advice is not None:
        click.echo(f"risk gate:  {'approved' if res.advice.approved else 'rejected'}: "
                   f"{'; '.join(res.advice.reasons)}")
    if res.hermes_assessment is not None:
        click.echo(f"assessment: {res.hermes_assessment}")
    if r.error:
        click.echo(f"error:      {r.error}")


@click.command("orchestrate")
@click.argument("query", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print each result as JSON.")
@click.option("--market_channel", "--market-channel", "market_channel", default=None,
              help="Subject / Redis channel of the ticks (default from config: market.ticks).")
@click.option("--ticks_per_proposal", "--ticks-per-proposal", "ticks_per_proposal", type=int,
              default=None, help="Ticks buffered per run. With a QUERY: wait for this many "
                                 "ticks first.")
@click.option("--redis_url", "--redis-url", "redis_url", default=None,
              help="Read ticks from this Redis instead of NATS.")
@click.option("--count", type=int, default=0,
              help="Without a QUERY: stop after this many runs (default: run until Ctrl-C).")
@config_option
def orchestrate(query: str | None, as_json: bool, market_channel: str | None,
                ticks_per_proposal: int | None, redis_url: str | None, count: int,
                config_path: str | None) -> None:
    """Run the policy workflow: phi3 proposal, risk gate, hermes assessment, events, run log."""
    config = get_config(config_path)
    cfg = config.plugin("orchestrator", OrchestratorConfig)
    changes: dict[str, Any] = {}
    if market_channel:
        changes["market_channel"] = market_channel
    if ticks_per_proposal is not None:
        if ticks_per_proposal < 1:
            raise click.BadParameter("must be >= 1", param_hint="--ticks_per_proposal")
        changes["ticks_per_proposal"] = ticks_per_proposal
    if redis_url is not None:
        changes["redis_url"] = redis_url
    cfg = msgspec.structs.replace(cfg, **changes)

    async def go(bus: Bus) -> int:
        flow = Workflow(bus, cfg)
        failed = 0
        if query is not None and ticks_per_proposal is None:
            res = await flow.run(query, [])
            print_result(res, as_json)
            return 1 if res.run.status == "error" else 0
        buf = TickBuffer(cfg.ticks_per_proposal)
        feeder = asyncio.ensure_future(_feed(bus, cfg, buf))
        where = f"redis {cfg.redis_url}" if cfg.redis_url else "NATS"
        click.echo(f"orchestrate: waiting for {cfg.ticks_per_proposal} ticks per run on "
                   f"{where} {cfg.market_channel}", err=True)
        runs = 0
        try:
            while True:
                batch = await buf.batches.get()
                res = await flow.run(query or cfg.query, batch)
                print_result(res, as_json)
                failed += res.run.status == "error"
                runs += 1
                if query is not None or (count and runs >= count):
                    return 1 if failed else 0
        finally:
            feeder.cancel()
            if buf.malformed:
                click.echo(f"orchestrate: {buf.malformed} malformed ticks skipped "
                           f"(last: {buf.last_malformed})", err=True)

    try:
        code = run_with_bus(config, go, name="osiris-orchestrate", reconnect=True, drain=True)
    except KeyboardInterrupt:
        return
    if code:
        raise SystemExit(code)


async def _feed(bus: Bus, cfg: OrchestratorConfig, buf: TickBuffer) -> None:
    if cfg.redis_url:
        state: dict[str, Any] = {}
        async for data in redis_messages(cfg.redis_url, cfg.market_channel, state):
            buf.feed(data, f"redis {cfg.market_channel}")
        return
    sub = await bus.nc.subscribe(cfg.market_channel)
    try:
        async for msg in sub.messages:
            buf.feed(msg.data, msg.subject)
    finally:
        await sub.unsubscribe()


__all__ = ["orchestrate", "print_result"]
