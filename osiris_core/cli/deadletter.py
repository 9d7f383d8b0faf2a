"""`osiris deadletter list|replay`: see and re-drive durable events that kept failing."""

from __future__ import annotations

import json
from typing import Any

import click
import msgspec

from osiris_core.cli.kit import pass_config, run_with_bus
from osiris_core.config import Config
from osiris_core.nats.bus import Bus
from osiris_core.ops.deadletters import StoredLetter, list_letters, replay

__all__ = ["deadletter"]


@click.group()
def deadletter() -> None:
    """Durable events moved aside after max_deliver failed deliveries (osiris.deadletter)."""


@deadletter.command("list")
@pass_config
@click.option("--limit", type=int, default=0, help="Only the newest N (default: all).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def list_cmd(config: Config, limit: int, as_json: bool) -> None:
    """Show the dead letters still waiting (oldest first)."""

    async def go(bus: Bus) -> list[StoredLetter]:
        return await list_letters(bus, limit=limit)

    letters = run_with_bus(config, go, name="osiris-deadletter")
    if as_json:
        for s in letters:
            click.echo(json.dumps({"seq": s.seq, **msgspec.to_builtins(s.letter)}))
        return
    if not letters:
        click.echo("no dead letters")
        return
    for s in letters:
        lt = s.letter
        click.echo(f"{s.seq:>6}  {lt.subject}  stream seq {lt.stream_seq}  by {lt.actor} "
                   f"after {lt.attempts} deliveries: {lt.error[:120]}")


@deadletter.command("replay")
@pass_config
@click.argument("seqs", nargs=-1, type=int)
@click.option("--all", "replay_all", is_flag=True, help="Replay every dead letter.")
@click.option("--subject", default=None, help="Only letters of this original subject.")
def replay_cmd(config: Config, seqs: tuple[int, ...], replay_all: bool,
               subject: str | None) -> None:
    """Re-publish dead letters SEQ... (or --all) on their original subjects, then remove
    them. Fix the failing handler first: a letter that fails again comes back."""
    if not seqs and not replay_all:
        raise click.UsageError("name the letters to replay (SEQ ...) or pass --all")

    async def go(bus: Bus) -> list[dict[str, Any]]:
        letters = await list_letters(bus)
        chosen = [s for s in letters if (replay_all or s.seq in seqs)
                  and (subject is None or s.letter.subject == subject)]
        missing = set(seqs) - {s.seq for s in letters}
        if missing:
            raise click.ClickException(
                f"no dead letter with sequence {', '.join(map(str, sorted(missing)))}")
        return [{"seq": s.seq, "subject": s.letter.subject,
                 "fresh": await replay(bus, s)} for s in chosen]

    done = run_with_bus(config, go, name="osiris-deadletter")
    for d in done:
        click.echo(f"replayed {d['seq']} on {d['subject']}"
                   + ("" if d["fresh"] else " (JetStream saw a duplicate)"))
    click.echo(f"{len(done)} dead letters replayed")
