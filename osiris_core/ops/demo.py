"""`osiris demo`: every installed plugin on an embedded NATS, with a live status table."""

from __future__ import annotations

import asyncio
import inspect
import os
import shutil
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from osiris_core.config import Config
from osiris_core.nats.server import free_port
from osiris_core.plugins import load_plugins
from osiris_core.runtime.lifecycle import State
from osiris_core.runtime.node import Runtime, exit_guard
from osiris_core.runtime.supervisor import ActorCell

__all__ = ["DemoOptions", "run_demo"]

DEMO_PORT = 4222


def _demo_config(config: Config) -> Config:
    """Embedded NATS on 4222 when free (so `osiris request` finds it), else any free port."""
    port = DEMO_PORT if free_port_ok(DEMO_PORT) else free_port()
    return config.with_settings(nats_url=f"nats://127.0.0.1:{port}", embedded_nats="always")


def free_port_ok(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _table(cells: list[ActorCell]) -> str:
    lines = [f"  {'ACTOR':<16} {'PLUGIN':<14} {'STATE':<9} {'HANDLED':>7} {'RESTARTS':>8}"]
    for c in cells:
        lines.append(f"  {c.name:<16} {c.plugin:<14} {c.state.value:<9} {c.handled:>7} "
                     f"{c.restarts:>8}")
    return "\n".join(lines)


@dataclass(frozen=True)
class DemoOptions:
    """What the user asked of `osiris demo`, handed to each plugin's `prepare`."""

    tiny: bool = False
    """`--tiny`: the random-weight tiny models (seconds to build) instead of the real small
    model."""


Hint = tuple[str, str, str]
"""(plugin, command, what it shows): an `osiris` command line the demo suggests, or a shell
line against the gateway when it holds `{gateway}` (the gateway's URL is put in)."""
GATEWAY_HINT = "{gateway}"
"""(plugin, osiris command line without `osiris`, what it shows): the demo's "try" lines."""


def _takes_options(fn: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in params)


def prepare_plugins(config: Config, options: DemoOptions | None = None) -> tuple[Config, list[Hint]]:
    """Run every plugin's demo preparation; merge what they return into their tables and
    collect the commands they suggest. Values a user set in the config file win over what a
    plugin proposes.
    """
    loaded = load_plugins(None)
    options = options or DemoOptions()
    prepares: list[tuple[str, Callable[..., dict[str, Any]]]] = []
    found: list[Hint] = []

    def registrar(rec: Any) -> dict[str, Any]:
        def register(fn: Callable[..., dict[str, Any]],
                     hints: Sequence[tuple[str, str]] = ()) -> None:
            prepares.append((rec.name, fn))
            found.extend((rec.name, cmd, what) for cmd, what in hints)

        return {"register": register}

    loaded.call_each("register_demo", registrar)
    tables = {k: dict(v) for k, v in config.plugin_tables.items()}
    data_dir = config.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    for name, prepare in prepares:
        print(f"demo: preparing {name} …", flush=True)
        try:
            settings = prepare(data_dir, options) if _takes_options(prepare) else prepare(data_dir)
        except Exception as e:  # noqa: BLE001 - one plugin's demo assets must not stop the rest
            print(f"demo: {name}: preparation failed: {type(e).__name__}: {e}", flush=True)
            continue
        tables[name] = {**settings, **tables.get(name, {})}
    return Config(config.settings, config.path, tables), found


def _osiris_command() -> str:
    """How the user can type `osiris` again: plain when it is on PATH, else the path this
    demo was started with (the README's `.venv/bin/osiris`)."""
    argv0 = sys.argv[0]
    if os.path.basename(argv0) != "osiris" or shutil.which("osiris"):
        return "osiris"
    full = os.path.abspath(argv0)
    return os.path.relpath(full) if full.startswith(os.getcwd() + os.sep) else full


def _where_to_look(runtime: Runtime, hints: list[Hint]) -> list[str]:
    env = f"OSIRIS_NATS_URL={runtime.nats_url} {_osiris_command()} "
    lines = ["", "open:"]
    running = {c.plugin for c in runtime.cells}
    urls = [(c.name, c.status().facts.get("url")) for c in runtime.cells]
    gateway = next((url for name, url in urls if name == "gateway" and url), None)
    if gateway:  # where a person starts: the review desk, before any other address
        lines.append(f"  {'desk':<14} {gateway}/desk")
    lines += [f"  {name:<14} {url}" for name, url in urls if url]
    if gateway:
        lines += [
            f"  {'':<14} {gateway}/health · {gateway}/schema · "
            f"{gateway}/static/audio_console.html",
            "", "try (in another terminal):",
            f"  curl -s {gateway}/health",
        ]
        lines += [f"  {cmd.format(gateway=gateway)}" for plugin, cmd, _ in hints
                  if plugin in running and GATEWAY_HINT in cmd]
    else:
        lines += ["", "try (in another terminal):"]
    lines += [
        f"  {env}tail '>'                 # every event as it happens",
        f"  {env}plugins                  # plugins, actors and live state",
        f"  {env}request osiris.{runtime.cells[0].name}.control "
        "'{\"op\": \"status\"}'" if runtime.cells else "",
    ]
    lines += [f"  {env}{cmd:<24} # {what}" for plugin, cmd, what in hints
              if plugin in running and GATEWAY_HINT not in cmd]
    lines += ["", "Ctrl-C stops the demo."]
    return lines


async def _heartbeat(runtime: Runtime, every: float) -> None:
    """A line every `every` seconds: what each actor has handled so far."""
    t0 = asyncio.get_running_loop().time()
    while True:
        await asyncio.sleep(every)
        t = asyncio.get_running_loop().time() - t0
        busy = [f"{c.name} {c.handled}" for c in runtime.cells if c.handled]
        bad = [f"{c.name}:{c.state.value}" for c in runtime.cells
               if c.state not in (State.RUNNING, State.PAUSED)]
        print(f"demo t+{t:.0f}s handled: {', '.join(busy) or 'nothing yet'}"
              + (f" · not running: {', '.join(bad)}" if bad else ""), flush=True)


async def run_demo(config: Config, duration: float | None, heartbeat_s: float = 15.0,
                   options: DemoOptions | None = None) -> None:
    cfg, hints = prepare_plugins(_demo_config(config), options)
    runtime = Runtime(cfg, load_all=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    out = sys.stdout
    beat: asyncio.Task[None] | None = None
    try:
        await runtime.start()
        url = runtime.nats_url
        skipped = [r for r in runtime.plugins.records.values() if not r.loaded]
        print(f"\nosiris demo — NATS at {url} (embedded, JetStream in {cfg.data_dir / 'nats'})",
              file=out)
        print(f"plugins running: {', '.join(r.name for r in runtime.plugins.active) or 'none'}",
              file=out)
        for r in skipped:
            print(f"plugin skipped: {r.name}: {r.error}", file=out)
        print(_table(runtime.cells), file=out)
        print("\n".join(_where_to_look(runtime, hints)), file=out, flush=True)
        beat = loop.create_task(_heartbeat(runtime, heartbeat_s))
        await _wait(stop, duration)
    finally:
        if beat is not None:
            beat.cancel()
        exit_guard(cfg.settings.shutdown_timeout_s)  # the process ends, whatever hangs
        await runtime.stop()
        print("osiris demo stopped.", file=out, flush=True)


async def _wait(stop: asyncio.Event, duration: float | None) -> Any:
    if duration is None:
        await stop.wait()
        return
    try:
        await asyncio.wait_for(stop.wait(), duration)
    except TimeoutError:
        pass
