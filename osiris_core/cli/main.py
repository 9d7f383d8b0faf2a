"""The `osiris` command: fixed verbs (DESIGN §9) plus those plugins add."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import uuid
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click
import msgspec
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from nats.js.errors import APIError, NoStreamResponseError

from osiris_core.cli.kit import (
    config_option,
    connected_bus,
    exit_now,
    get_config,
    pass_config,
    run_async,
    run_with_bus,
    setup_logging,
)
from osiris_core.config import Config, load_config
from osiris_core.errors import ConfigError, OsirisError, RequestTimeout, ServiceError, Unavailable
from osiris_core.nats.bus import MSG_ID_HEADER, Bus, gather_nodes
from osiris_core.observability.logs import LOG_FORMAT_ENV, notice
from osiris_core.observability.logs import setup_logging as setup_process_logging
from osiris_core.observability.sentry import init_sentry
from osiris_core.plugins import discover, load_plugins

__all__ = [
    "cli",
    "config_option",
    "connected_bus",
    "get_config",
    "main",
    "pass_config",
    "run_async",
]

T = TypeVar("T")
log = logging.getLogger("osiris.cli")


class OsirisGroup(click.Group):
    """Turns osiris errors into one-line messages and exit codes instead of tracebacks."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConfigError as e:
            notice(f"osiris: config error: {e}", logging.ERROR)
            ctx.exit(2)
        except ServiceError as e:
            notice(f"osiris: {e.code}: {e.message}", logging.ERROR)
            ctx.exit(1)
        except OsirisError as e:
            notice(f"osiris: {e}", logging.ERROR)
            ctx.exit(1)


@click.group(cls=OsirisGroup)
@click.version_option(package_name="osiris")
def cli() -> None:
    """osiris: plugin-based async actor runtime over NATS."""


# --- run / demo -------------------------------------------------------------------------
@cli.command()
@config_option
@click.option("--only", default=None, help="Comma-separated plugins to run (default: [osiris].plugins).")
def run(config_path: str | None, only: str | None) -> None:
    """Start the plugin set of osiris.toml and serve until SIGINT/SIGTERM."""
    from osiris_core.runtime.node import Runtime

    config = get_config(config_path)
    setup_logging(config.settings.log_level)
    names = [n.strip() for n in only.split(",") if n.strip()] if only else None
    runtime = Runtime(config, only=names)

    def ready(rt: Runtime) -> None:
        notice(f"osiris: ready on {rt.nats_url} — {len(rt.cells)} actors "
               f"({', '.join(c.name + ':' + c.state.value for c in rt.cells) or 'none'})")

    run_async(_reporting_errors(runtime.run_until_signal(ready)))
    exit_now(0)


@cli.command()
@config_option
@click.option("--duration", type=float, default=None,
              help="Stop after this many seconds (default: run until Ctrl-C).")
@click.option("--status-every", type=float, default=15.0, show_default=True,
              help="Seconds between the one-line progress reports.")
@click.option("--tiny", is_flag=True,
              help="Run the random-weight tiny models (built in seconds) instead of the real "
                   "small model (SmolLM2-135M-Instruct).")
def demo(config_path: str | None, duration: float | None, status_every: float, tiny: bool) -> None:
    """The whole loop on CPU: the real small model, embedded NATS, every installed plugin.

    Uses the built-in defaults (not ./osiris.toml) unless -c names a file.
    """
    from osiris_core.ops.demo import DemoOptions, run_demo

    # the demo runs on the embedded defaults: a production ./osiris.toml (real checkpoints,
    # GPU budget) must not leak into it; -c opts in to a file explicitly
    config = load_config(config_path, search_cwd=False)
    setup_logging(config.settings.log_level)
    run_async(_reporting_errors(run_demo(config, duration, status_every, DemoOptions(tiny=tiny))))
    exit_now(0)


async def _reporting_errors(main: Coroutine[Any, Any, T]) -> T:
    """Run a server verb with Sentry on (when SENTRY_DSN is set): started on the running
    loop, whose task factory its asyncio integration patches."""
    try:
        init_sentry()
    except BaseException:
        main.close()
        raise
    return await main


# --- catalogue and plugins --------------------------------------------------------------
@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Full catalogue with JSON schemas.")
def subjects(as_json: bool) -> None:
    """Print the subject catalogue: subject, kind, schema, owner, durability."""
    from osiris_core.ops.catalogue import catalogue_json, catalogue_table

    loaded = load_plugins(None)
    click.echo(catalogue_json(loaded.catalogue) if as_json else catalogue_table(loaded.catalogue))


@cli.command()
@config_option
@click.option("--json", "as_json", is_flag=True)
@click.option("--timeout", type=float, default=0.5, help="How long to wait for running nodes.")
def plugins(config_path: str | None, as_json: bool, timeout: float) -> None:
    """List installed plugins, whether they load, their actors and live state."""
    config = get_config(config_path)
    loaded = load_plugins(None)
    loaded.collect_actors({r.name: r.config_schema() for r in loaded.active
                           if _defaults_ok(r.config_schema)})
    enabled = set(config.settings.plugins)
    live = run_async(_live_states(config, timeout))
    rows: list[dict[str, Any]] = []
    for rec in loaded.records.values():
        actors = [a.name for a in rec.actors]
        states = sorted({f"{a}:{s}" for a in actors for s in live.get(a, [])})
        rows.append({
            "name": rec.name, "package": rec.package, "version": rec.version,
            "enabled": rec.name in enabled, "loaded": rec.loaded, "error": rec.error,
            "actors": actors, "state": states or (["not running"] if actors else []),
        })
    for name in sorted(enabled - set(loaded.records)):
        rows.append({"name": name, "package": None, "version": None, "enabled": True,
                     "loaded": False, "error": f"not installed (pip install osiris-{name})",
                     "actors": [], "state": []})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    head = f"{'NAME':<14} {'PACKAGE':<24} {'VERSION':<9} {'ENABLED':<8} {'ACTORS':<18} STATE"
    click.echo(head)
    for r in rows:
        state = ", ".join(r["state"]) if r["loaded"] else f"ERROR {r['error']}"
        click.echo(f"{r['name']:<14} {r['package'] or '-':<24} {r['version'] or '-':<9} "
                   f"{'yes' if r['enabled'] else 'no':<8} {','.join(r['actors']) or '-':<18} "
                   f"{state}")


def _defaults_ok(schema: type[Any]) -> bool:
    try:
        schema()
        return True
    except Exception:  # noqa: BLE001 - a schema with required fields: skip actor listing
        return False


async def _live_states(config: Config, timeout: float) -> dict[str, list[str]]:
    try:
        async with connected_bus(config) as bus:
            nodes = await gather_nodes(bus, timeout)
    except (OsirisError, OSError):
        return {}  # no NATS: nothing is running
    states: dict[str, list[str]] = {}
    for node in nodes:
        for a in node.actors:
            states.setdefault(a.name, []).append(a.state)
    return states


# --- talking to a running system --------------------------------------------------------
@cli.command()
@config_option
@click.argument("subject")
@click.argument("payload", default="")
@click.option("--timeout", type=float, default=30.0, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Write the raw reply to this file (e.g. a WAV).")
def request(config_path: str | None, subject: str, payload: str, timeout: float,
            out: str | None) -> None:
    """Send PAYLOAD (JSON) to SUBJECT and print the reply."""
    config = get_config(config_path)
    if payload:
        _json_param(payload)
    data = payload.encode()

    async def go(bus: Bus) -> bytes:
        reply: bytes = await bus.request(subject, data, reply_type=bytes, timeout=timeout)
        return reply

    reply = run_with_bus(config, go)
    if out:
        Path(out).write_bytes(reply)
        click.echo(f"{len(reply)} bytes written to {out}", err=True)
        return
    try:
        click.echo(json.dumps(json.loads(reply), indent=2))
    except (json.JSONDecodeError, UnicodeDecodeError):
        click.echo(f"<{len(reply)} bytes of binary reply; use --out FILE>")


@cli.command()
@config_option
@click.argument("subject")
@click.argument("payload")
@click.option("--msg-id", "msg_id", default=None,
              help="Nats-Msg-Id of a durable event (default: a fresh uuid); JetStream drops "
                   "a second message with the same id.")
@click.option("--timeout", type=float, default=5.0, show_default=True,
              help="How long a durable publish waits for JetStream's ack.")
def publish(config_path: str | None, subject: str, payload: str, msg_id: str | None,
            timeout: float) -> None:
    """Publish PAYLOAD (JSON) as an event on SUBJECT.

    PAYLOAD is checked against the subject's type in the catalogue (`osiris subjects`). A
    durable subject goes through JetStream: the stream's ack (stream, seq, duplicate) is
    printed as JSON once the stream holds the message.
    """
    if any(token in ("*", ">") for token in subject.split(".")):
        raise click.BadParameter("publish to one subject, not a wildcard", param_hint="SUBJECT")
    config = get_config(config_path)
    known = load_plugins(None).catalogue.get(subject)
    _json_param(payload)
    data = payload.encode()
    if known is not None and known.request is not None and known.request is not bytes:
        try:  # as the subscribers will decode it
            msgspec.json.decode(data, type=known.request)
        except msgspec.ValidationError as e:
            raise click.BadParameter(f"not a {known.request.__name__} (the payload of "
                                     f"{subject}): {e}", param_hint="PAYLOAD") from None
    durable = known is not None and known.durable
    msg_id = msg_id or (uuid.uuid4().hex if durable else None)

    async def go(bus: Bus) -> dict[str, Any] | None:
        if not durable:
            await bus.nc.publish(subject, data,
                                 headers={MSG_ID_HEADER: msg_id} if msg_id else None)
            return None
        return await _publish_durable(bus, subject, data, str(msg_id), timeout)

    ack = run_with_bus(config, go, drain=True)
    if ack is None:
        click.echo(f"osiris: published {len(data)} bytes to {subject} (core NATS: no ack)",
                   err=True)
        return
    click.echo(json.dumps(ack))


async def _publish_durable(bus: Bus, subject: str, data: bytes, msg_id: str,
                           timeout: float) -> dict[str, Any]:
    try:
        ack = await bus.js.publish(subject, data, timeout=timeout,
                                   headers={MSG_ID_HEADER: msg_id})
    except (NoStreamResponseError, NoRespondersError):
        raise Unavailable(f"no JetStream stream captures {subject} (the runtime declares the "
                          "streams of its plugins' durable subjects: is 'osiris run' up?)") \
            from None
    except (TimeoutError, NatsTimeout):
        raise RequestTimeout(f"no JetStream ack for {subject} within {timeout:g}s") from None
    except APIError as e:
        raise ServiceError(f"JetStream refused {subject}: {e.description}",
                           code=int(e.code or 500)) from None
    return {"subject": subject, "stream": ack.stream, "seq": ack.seq,
            "duplicate": bool(ack.duplicate), "msg_id": msg_id}


def _json_param(payload: str) -> Any:
    try:
        return json.loads(payload)
    except json.JSONDecodeError as e:
        raise click.BadParameter(f"not valid JSON: {e}", param_hint="PAYLOAD") from None


@cli.command()
@config_option
@click.argument("pattern")
@click.option("--count", type=int, default=0, help="Exit after this many messages.")
def tail(config_path: str | None, pattern: str, count: int) -> None:
    """Print events matching PATTERN (e.g. 'phi3.>') as they arrive."""
    config = get_config(config_path)

    seen = 0
    done = asyncio.Event()

    async def show(msg: Any) -> None:
        nonlocal seen
        try:
            body = json.dumps(json.loads(msg.data))
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = f"<{len(msg.data)} bytes>"
        click.echo(f"{msg.subject} {body}")
        seen += 1
        if count and seen >= count:
            done.set()

    async def go(bus: Bus) -> None:
        await bus.nc.subscribe(pattern, cb=show)
        await bus.nc.flush()
        click.echo(f"osiris: tailing {pattern} on {config.settings.nats_url}", err=True)
        await done.wait()

    try:
        run_with_bus(config, go, reconnect=True)
    except KeyboardInterrupt:
        pass


# --- plugin verbs -----------------------------------------------------------------------
def _add_plugin_commands() -> None:
    if not discover():
        return
    loaded = load_plugins(None)
    loaded.call_each("register_commands", lambda rec: {"cli": cli})


def _exit_quietly(signum: int, frame: Any) -> None:
    raise SystemExit(0)


def main() -> None:
    # until a verb installs its own handling (osiris run drains), SIGTERM during start-up
    # (imports, plugin discovery, config) ends the process cleanly with 0, not by the signal
    signal.signal(signal.SIGTERM, _exit_quietly)
    if os.environ.get(LOG_FORMAT_ENV):  # text mode keeps Python's defaults for most verbs
        try:
            setup_process_logging(None)  # json: every verb's log lines are JSON
        except ConfigError as e:
            click.echo(f"osiris: config error: {e}", err=True)
            raise SystemExit(2) from None
    from osiris_core.cli.deadletter import deadletter  # verbs load when the command runs
    from osiris_core.cli.natsconfig import nats_config
    from osiris_core.cli.profile import profile
    from osiris_core.cli.streams import streams

    cli.add_command(deadletter)
    cli.add_command(nats_config)
    cli.add_command(profile)
    cli.add_command(streams)
    logging.getLogger("osiris.plugins").setLevel(logging.CRITICAL)  # `osiris plugins` reports
    _add_plugin_commands()
    logging.getLogger("osiris.plugins").setLevel(logging.NOTSET)
    cli(prog_name="osiris")
