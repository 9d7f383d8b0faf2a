"""`osiris profile ACTOR|NODE`: a live profile of the process hosting an actor, or of a node."""

from __future__ import annotations

import time
from pathlib import Path

import click

from osiris_core.cli.kit import pass_config, run_with_bus
from osiris_core.config import Config
from osiris_core.errors import NoResponders, NotFound
from osiris_core.nats.bus import Bus, gather_nodes
from osiris_core.observability.profiling import decode_data
from osiris_core.protocol import ProfileArgs, ProfileOp, ProfileResult
from osiris_core.subjects import runtime_profile

__all__ = ["profile"]

STATUS_WINDOW_S = 0.5
EXT = {"speedscope": "speedscope.json", "html": "html"}


@click.command()
@pass_config
@click.argument("target")
@click.option("--seconds", type=click.FloatRange(0.1, 60), default=5.0, show_default=True,
              help="How long to sample (0.1 to 60).")
@click.option("--format", "fmt", type=click.Choice(["speedscope", "html"]), default="speedscope",
              show_default=True, help="speedscope JSON (speedscope.app) or pyinstrument's HTML.")
@click.option("-o", "--out", type=click.Path(dir_okay=False), default=None,
              help="File to write (default: profile-<target>-<time>.<ext>).")
@click.option("--top", type=int, default=10, show_default=True, help="Frames to print.")
def profile(config: Config, target: str, seconds: float, fmt: str, out: str | None,
            top: int) -> None:
    """Sample every thread of the process hosting actor TARGET, or of the node TARGET
    (`[osiris].node`, else host-pid: /health shows each actor's node), for --seconds; write
    the file, print the top frames."""
    args = ProfileArgs(seconds=seconds, format=fmt)  # type: ignore[arg-type]

    async def go(bus: Bus) -> ProfileResult:
        nodes = await gather_nodes(bus, STATUS_WINDOW_S)
        wait = seconds + 30.0
        if any(n.node == target for n in nodes):
            reply: ProfileResult = await bus.request(
                runtime_profile(target), args, reply_type=ProfileResult, timeout=wait)
            return reply
        actors = sorted({a.name for n in nodes for a in n.actors})
        if target not in actors:
            raise NotFound(
                f"no live actor or node named {target!r} (actors: "
                f"{', '.join(actors) or 'none'}; nodes: "
                f"{', '.join(n.node for n in nodes) or 'none'})")
        try:
            ctl = await bus.control(target, ProfileOp(args=args), timeout=wait)
        except NoResponders:
            raise NotFound(f"no live actor named {target!r}") from None
        return ctl.result

    click.echo(f"osiris: profiling {target} for {seconds:g}s …", err=True)
    result = run_with_bus(config, go, name="osiris-profile")
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in target)
    path = Path(out or f"profile-{safe}-{time.strftime('%Y%m%d-%H%M%S')}.{EXT[fmt]}")
    path.write_bytes(decode_data(result))
    click.echo(f"wrote {path} ({result.format}: {result.samples} samples over "
               f"{result.seconds:g}s, {len(result.threads)} threads of {result.node} pid "
               f"{result.pid}{', identical stacks merged to fit' if result.merged else ''})")
    if fmt == "speedscope":
        click.echo(f"open it at https://www.speedscope.app (or: npx speedscope {path})")
    click.echo("top frames (own time, idle waits left out):")
    for f in result.top[:top]:
        where = f"{f.file}:{f.line}" if f.file else ""
        click.echo(f"  {f.seconds:8.3f}s  {f.samples:6d}  {f.name}  {where}")
