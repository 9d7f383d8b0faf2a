"""`osiris sim CSV …` (replay onto NATS, or onto Redis like the seeds' simulator) and
`osiris sim make-data OUT.csv` (synthetic series)."""

from __future__ import annotations

import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

import click

from osiris_core.cli import config_option, connected_bus, get_config, run_async
from osiris_core.errors import OsirisError

from .csvdata import CsvError, load_bars, make_data
from .replay import ReplayStats, parse_speed, replay

REDIS_BATCH = 256


class SimGroup(click.Group):
    """`osiris sim CSV` replays; `osiris sim make-data …` is a subcommand."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["replay", *args]
        return super().parse_args(ctx, args)


@click.group(cls=SimGroup, name="sim", invoke_without_command=False)
def sim() -> None:
    """Market simulator: `osiris sim CSV [--speed 10x|1x|max] [--from_date D] [--redis_url U]
    [--loop]` replays OHLCV bars onto market.ticks; `osiris sim make-data OUT.csv` writes a
    synthetic series."""


@sim.command("make-data")
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--bars", type=int, default=5000, show_default=True, help="Number of bars.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--start", default="2023-01-02T14:30:00+00:00", show_default=True,
              help="Timestamp of the first bar.")
@click.option("--interval", "interval_s", type=int, default=3600, show_default=True,
              help="Seconds between bars.")
@click.option("--price", type=float, default=100.0, show_default=True)
@click.option("--symbol", default="SIM", show_default=True)
def make_data_cmd(out: str, bars: int, seed: int, start: str, interval_s: int, price: float,
                  symbol: str) -> None:
    """Write OUT.csv: GBM with GARCH(1,1) volatility clustering, deterministic per seed."""
    if bars < 1:
        raise click.BadParameter("must be >= 1", param_hint="--bars")
    path = make_data(out, bars=bars, seed=seed, start=start, price=price,
                     interval_s=interval_s, symbol=symbol)
    click.echo(f"wrote {bars} bars to {path}", err=True)


def _progress(stream: Any) -> Any:
    tty = stream.isatty()
    last = [0.0]

    def show(st: ReplayStats, total: int, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - last[0] < (0.2 if tty else 2.0):
            return
        last[0] = now
        done = st.published - st.passes * total if not final else total
        pct = 100.0 * max(done, 0) / total if total else 100.0
        text = (f"sim: {st.published} ticks published (pass {st.passes + (0 if final else 1)}, "
                f"{pct:5.1f}%), {st.rate:,.0f} ticks/s, at {st.last_timestamp}")
        if st.errors:
            text += f", {st.errors} publish errors ({st.last_error})"
        stream.write(("\r" + text) if tty else text + "\n")
        stream.flush()

    return show


@sim.command("replay", hidden=True)
@click.argument("csv_path", metavar="CSV", type=click.Path(dir_okay=False))
@click.option("--speed", default="1x", show_default=True,
              help="10x, 1x, 0.5x … (bar time divided by the factor) or max.")
@click.option("--from_date", "--from-date", "from_date", default=None, metavar="YYYY-MM-DD",
              help="Skip bars before this date.")
@click.option("--redis_url", "--redis-url", "redis_url", default=None,
              help="Publish to this Redis (pub/sub channel market.ticks, like the seeds' "
                   "simulator) instead of NATS; the bridge carries it on.")
@click.option("--loop", is_flag=True, help="Start over at the end of the file.")
@click.option("--strict", is_flag=True, help="Fail on the first bad row instead of skipping it.")
@click.option("--channel", default="market.ticks", show_default=True)
@click.option("--symbol", default="SIM", show_default=True,
              help="Symbol for rows without a symbol column.")
@config_option
def replay_cmd(csv_path: str, speed: str, from_date: str | None, redis_url: str | None,
               loop: bool, strict: bool, channel: str, symbol: str,
               config_path: str | None) -> None:
    """Replay CSV onto market.ticks."""
    try:
        factor = parse_speed(speed)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--speed") from None
    try:
        start = date.fromisoformat(from_date) if from_date else None
    except ValueError:
        raise click.BadParameter(f"{from_date!r} is not YYYY-MM-DD",
                                 param_hint="--from_date") from None
    try:
        loaded = load_bars(Path(csv_path), from_date=start, strict=strict, symbol=symbol)
    except CsvError as e:
        raise click.ClickException(str(e)) from None
    for bad in loaded.bad:
        click.echo(f"sim: {csv_path}:{bad.line}: skipped: {bad.reason}", err=True)
    if loaded.skipped_before:
        click.echo(f"sim: {loaded.skipped_before} bars before {from_date} skipped", err=True)
    if not loaded.bars:
        raise click.ClickException(f"no bars to replay in {csv_path}")
    click.echo(f"sim: {len(loaded.bars)} bars ({len(loaded.bad)} bad rows skipped) → "
               f"{'redis ' + redis_url if redis_url else 'NATS'} {channel} at "
               f"{speed}{' (looping)' if loop else ''}", err=True)
    show = _progress(sys.stderr)

    async def go() -> ReplayStats:
        if redis_url:
            return await _to_redis(redis_url, channel, loaded.bars, factor, loop, show)
        config = get_config(config_path)
        async with connected_bus(config, name="osiris-sim", reconnect=True, drain=True) as bus:
            nc = bus.nc

            async def publish(data: bytes) -> None:
                await nc.publish(channel, data)

            return await replay(loaded.bars, publish, speed=factor, loop=loop,
                                progress=show, flush=nc.flush)

    try:
        st = run_async(go())
    except KeyboardInterrupt:
        click.echo("\nsim: interrupted", err=True)
        return
    except OsirisError as e:
        raise click.ClickException(str(e)) from None
    show(st, len(loaded.bars), final=True)
    click.echo("", err=True)


async def _to_redis(url: str, channel: str, bars: list[Any], factor: float | None, loop: bool,
                    show: Any) -> ReplayStats:
    try:
        import redis.asyncio as aioredis
    except ImportError:
        raise click.ClickException("--redis_url needs the redis client: "
                                   "pip install 'osiris-sim[redis]'") from None
    client = aioredis.from_url(url)
    try:
        await client.ping()
    except Exception as e:  # noqa: BLE001
        await client.aclose()
        raise click.ClickException(f"cannot reach Redis at {url}: {e}") from None
    pipe = client.pipeline(transaction=False)
    queued = 0

    async def flush() -> None:
        nonlocal queued
        if queued:
            await pipe.execute()
            queued = 0

    async def publish(data: bytes) -> None:
        nonlocal queued
        if factor is not None:
            await client.publish(channel, data)
            return
        pipe.publish(channel, data)
        queued += 1
        if queued >= REDIS_BATCH:
            await flush()

    try:
        return await replay(bars, publish, speed=factor, loop=loop, progress=show, flush=flush)
    finally:
        await flush()
        await client.aclose()
