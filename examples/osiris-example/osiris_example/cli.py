"""`osiris example echo TEXT` and `osiris example status`: plugin verbs that talk to a running
system (`-c FILE` finds its NATS), the template for a plugin's own verbs."""

from __future__ import annotations

import click

from osiris_core import Bus, Config
from osiris_core.cli import pass_config, run_with_bus
from osiris_core.protocol import ControlReply, NoResult, StatusOp

from .contracts import EchoReply, EchoRequest
from .subjects import ECHO


@click.group(name="example")
def example() -> None:
    """The example plugin: its echo service and its ledger."""


@example.command()
@click.argument("text")
@click.option("--upper", is_flag=True, help="Ask for the text upper-cased.")
@pass_config
def echo(config: Config, text: str, upper: bool) -> None:
    """Send TEXT to osiris.example.echo and print the reply."""

    async def go(bus: Bus) -> EchoReply:
        reply: EchoReply = await bus.request(ECHO, EchoRequest(text=text, upper=upper),
                                             reply_type=EchoReply, timeout=10)
        return reply

    reply = run_with_bus(config, go)
    click.echo(f"{reply.text} (from {reply.node})")


@example.command()
@pass_config
def status(config: Config) -> None:
    """The example actor's state and how many events its ledger holds."""

    async def go(bus: Bus) -> ControlReply[NoResult]:
        return await bus.control("example", StatusOp(), timeout=5)

    st = run_with_bus(config, go).status
    click.echo(f"example: {st.state}, {st.facts.get('ledger_rows', 0)} ledger rows, "
               f"{st.handled} requests handled")
