"""Helpers for `osiris` verbs — the core's and plugins' alike: `-c FILE` and a connected bus.

    @cli.command()
    @pass_config
    def hello(config: Config) -> None:
        async def go(bus: Bus) -> Reply:
            return await bus.request(...)
        reply = run_with_bus(config, go)

Re-exported by `osiris_core.cli`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import click

from osiris_core.config import Config, load_config
from osiris_core.nats.bus import Bus
from osiris_core.nats.connection import open_connection

__all__ = ["config_option", "connected_bus", "exit_now", "get_config", "pass_config",
           "run_async", "run_with_bus", "setup_logging"]

T = TypeVar("T")


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on uvloop when available."""
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:  # pragma: no cover - uvloop is a dependency on POSIX
        return asyncio.run(coro)


def setup_logging(level: str) -> None:
    """Log to stderr at `level`, as text or JSON (`OSIRIS_LOG_FORMAT`): `osiris_core.observability.logs`."""
    from osiris_core.observability.logs import setup_logging as setup

    setup(level)


def config_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`-c/--config FILE` on a verb, passed to it as `config_path` (load it with `get_config`)."""
    return click.option(
        "-c", "--config", "config_path", type=click.Path(dir_okay=False), default=None,
        help="osiris.toml to use (default: ./osiris.toml, then built-in defaults).",
    )(fn)


def get_config(config_path: str | None) -> Config:
    """The Config of `-c FILE`, else ./osiris.toml, else the built-in defaults."""
    return load_config(config_path)  # ConfigError → exit 2 via OsirisGroup


def pass_config(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`-c/--config FILE` on a verb, handed to it loaded, as the keyword argument `config`.

    A bad or missing file ends the command with exit code 2 and one line naming it."""

    @functools.wraps(fn)
    def with_config(*args: Any, config_path: str | None, **kwargs: Any) -> Any:
        return fn(*args, config=get_config(config_path), **kwargs)

    return config_option(with_config)


@contextlib.asynccontextmanager
async def connected_bus(config: Config, *, name: str = "osiris", reconnect: bool = False,
                        drain: bool = False) -> AsyncIterator[Bus]:
    """`async with connected_bus(config) as bus:` — a `Bus` on the config's NATS.

    Connects to `[osiris].nats_url` with its credentials and TLS (one short look:
    `Unavailable` "no NATS server at …" when nothing answers; `NatsRefused` naming the
    setting when the server refuses them) and closes the connection when
    the block ends. `name` is the connection's name (`nats server report connections`);
    `reconnect=True` for long-running verbs (tail, replays) that should ride out a server
    restart; `drain=True` flushes what the block published and lets subscriptions finish
    instead of closing at once.
    """
    nc = await open_connection(config.settings, name=name, reconnect=reconnect)
    try:
        yield Bus(nc)
    finally:
        await (nc.drain() if drain else nc.close())


def run_with_bus(config: Config, fn: Callable[[Bus], Awaitable[T]], *, name: str = "osiris",
                 reconnect: bool = False, drain: bool = False) -> T:
    """`fn(bus)` on a bus connected as `connected_bus(config, ...)` does, run to its end with
    `run_async`; the connection closes after. What a verb that talks to a running system
    needs in one call."""

    async def go() -> T:
        async with connected_bus(config, name=name, reconnect=reconnect, drain=drain) as bus:
            return await fn(bus)

    return run_async(go())


def exit_now(code: int) -> None:
    """End a server verb once its node has stopped: flush, then leave without the
    interpreter's finalisation (tearing down torch, onnxruntime and their threads took
    seconds, during which a supervisor sees a process that ignores its SIGTERM)."""
    from osiris_core.observability.sentry import flush

    flush()  # os._exit skips the SDK's own flush at exit
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
