"""`osiris streams [--apply]`: the JetStream streams the catalogue declares, as the server
has them; `--apply` creates what is missing and updates what falls short."""

from __future__ import annotations

import json

import click

from osiris_core.cli.kit import pass_config, run_with_bus
from osiris_core.config import Config
from osiris_core.errors import ConfigError
from osiris_core.nats.bus import Bus
from osiris_core.nats.streams import StreamPlan, apply, plan
from osiris_core.plugins import load_plugins

__all__ = ["streams"]


@click.command()
@pass_config
@click.option("--apply", "do_apply", is_flag=True,
              help="Create missing streams; add missing subjects and raise replicas to "
                   "[osiris].stream_replicas (needs the operator role under nats-config).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per stream.")
def streams(config: Config, do_apply: bool, as_json: bool) -> None:
    """The JetStream streams of every installed plugin's durable subjects: subjects,
    replicas, messages, and what `osiris run` would change. Never removes a subject, lowers
    the replicas or touches limits. Exit 1 when a stream needs a change not applied."""
    wanted = load_plugins(None).catalogue.streams()
    replicas = config.settings.stream_replicas

    async def go(bus: Bus) -> tuple[list[StreamPlan], list[str]]:
        plans = await plan(bus, wanted, replicas)
        done: list[str] = []
        if do_apply:
            for p in plans:
                if p.action != "ok":
                    await apply(bus, p)
                    done.append(f"{p.name}: {p.describe()}")
            plans = await plan(bus, wanted, replicas)
        return plans, done

    try:
        plans, done = run_with_bus(config, go, name="osiris-streams")
    except ConfigError as e:
        raise click.ClickException(str(e)) from None
    for line in done:
        click.echo(f"applied {line}", err=True)
    if as_json:
        for p in plans:
            click.echo(json.dumps({
                "name": p.name, "subjects": p.subjects, "replicas": p.replicas,
                "exists": p.exists, "server_subjects": p.have_subjects,
                "server_replicas": p.have_replicas, "messages": p.messages, "bytes": p.bytes,
                "action": p.action, "change": p.describe() if p.action != "ok" else ""}))
    else:
        click.echo(f"{'STREAM':<16} {'REPLICAS':>8} {'MESSAGES':>10} {'BYTES':>12}  STATE")
        for p in plans:
            state = "ok" if p.action == "ok" else f"needs: {p.describe()}"
            reps = str(p.have_replicas) if p.exists else "-"
            click.echo(f"{p.name:<16} {reps:>8} {p.messages:>10,} {p.bytes:>12,}  {state}")
            for s in p.subjects:
                click.echo(f"  {s}")
    if any(p.action != "ok" for p in plans):
        raise SystemExit(1)
