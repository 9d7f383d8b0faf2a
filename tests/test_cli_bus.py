"""The CLI's way onto the bus: `connected_bus`, `osiris publish`, and a plugin verb that takes
`-c FILE` (the example plugin's `osiris example echo|status`)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from osiris_core import Bus, Config, Unavailable, load_config
from osiris_core.cli import connected_bus
from osiris_core.nats.server import free_port
from osiris_core.protocol import ControlReply
from osiris_core.subjects import control, stream_name
from osiris_core.testing import write_config

OSIRIS = [sys.executable, "-c", "from osiris_core.cli import main; main()"]


def osiris(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*OSIRIS, *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


async def osiris_async(*args: str) -> subprocess.CompletedProcess[str]:
    """`osiris …` in a subprocess without blocking this test's event loop (and its actors)."""
    return await asyncio.get_running_loop().run_in_executor(None, lambda: osiris(*args))


async def ledger_rows(bus: Bus) -> int:
    reply: ControlReply = await bus.request(control("example"), {"op": "status"},
                                            reply_type=ControlReply, timeout=5)
    return int(reply.status.facts["ledger_rows"])


async def wait_for_rows(bus: Bus, n: int, timeout: float = 10.0) -> None:
    """Wait until the example ledger holds `n` rows (the state, not a duration)."""
    async with asyncio.timeout(timeout):
        while await ledger_rows(bus) != n:
            await asyncio.sleep(0.02)


async def test_connected_bus_uses_the_config_and_closes_the_connection_after(
    osiris_config: Callable[..., Config],
) -> None:
    cfg = osiris_config(plugins=[])
    async with connected_bus(cfg) as bus:
        assert bus.nc.is_connected
        assert bus.nc.connected_url is not None
        assert f"{bus.nc.connected_url.hostname}:{bus.nc.connected_url.port}" in \
            cfg.settings.nats_url
        assert bus.nc.options["name"] == "osiris"
        assert bus.nc.options["allow_reconnect"] is False  # one-shot verbs fail fast
        sub = await bus.nc.subscribe("cli.helper.ping")
        await bus.nc.flush()
        async with connected_bus(cfg, name="osiris-sim", reconnect=True, drain=True) as other:
            assert other.nc.options["name"] == "osiris-sim"
            assert other.nc.options["allow_reconnect"] is True
            await other.publish("cli.helper.ping", {"n": 1})  # delivered: drained, not dropped
        assert other.nc.is_closed
        assert json.loads((await sub.next_msg(timeout=10)).data) == {"n": 1}
    assert bus.nc.is_closed


async def test_connected_bus_without_a_server_says_where_it_looked(tmp_path: Path) -> None:
    url = f"nats://127.0.0.1:{free_port()}"
    cfg = load_config(write_config(tmp_path / "osiris.toml", url, []))
    with pytest.raises(Unavailable, match=f"no NATS server at {url}"):
        async with connected_bus(cfg):
            pass


async def test_publish_durable_event_prints_the_stream_ack_and_dedups_by_msg_id(
    osiris_config: Callable[..., Config], osiris_runtime: Any, bus: Bus,
) -> None:
    cfg = osiris_config(plugins=["example"])
    c = str(cfg.path)
    async with osiris_runtime(cfg):
        before = await ledger_rows(bus)
        first = await osiris_async("publish", "-c", c, "example.recorded",
                                   '{"id": "r1", "value": 7}', "--msg-id", "cli-publish-r1")
        assert first.returncode == 0, first.stderr
        ack = json.loads(first.stdout)
        assert ack["stream"] == stream_name("example.recorded") == "OSIRIS_EXAMPLE_RECORDED"
        assert ack["seq"] >= 1 and ack["duplicate"] is False and ack["msg_id"] == "cli-publish-r1"

        again = await osiris_async("publish", "-c", c, "example.recorded",
                                   '{"id": "r1", "value": 7}', "--msg-id", "cli-publish-r1")
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout) == {**ack, "duplicate": True}

        fresh = await osiris_async("publish", "-c", c, "example.recorded", '{"id": "r2"}')
        assert fresh.returncode == 0, fresh.stderr
        assert json.loads(fresh.stdout)["msg_id"]  # a uuid when none is given
        await wait_for_rows(bus, before + 2)

        # the example plugin's verbs find the same NATS through -c FILE
        status = await osiris_async("example", "status", "-c", c)
        assert status.returncode == 0, status.stderr
        assert status.stdout.startswith(f"example: running, {before + 2} ledger rows")
        echo = await osiris_async("example", "echo", "-c", c, "hello", "--upper")
        assert echo.returncode == 0, echo.stderr
        assert echo.stdout.startswith("HELLO (from ")


async def test_publish_core_event_reaches_subscribers(
    osiris_config: Callable[..., Config], bus: Bus,
) -> None:
    cfg = osiris_config(plugins=[])
    sub = await bus.nc.subscribe("cli.publish.plain")
    await bus.nc.flush()
    out = await osiris_async("publish", "-c", str(cfg.path), "cli.publish.plain", '{"x": [1, 2]}')
    assert out.returncode == 0, out.stderr
    assert "no ack" in out.stderr and out.stdout == ""
    assert json.loads((await sub.next_msg(timeout=10)).data) == {"x": [1, 2]}
    await sub.unsubscribe()


def test_publish_refuses_bad_payloads_before_connecting(tmp_path: Path) -> None:
    # nothing listens at this URL: every refusal below happens before a connection is tried
    path = write_config(tmp_path / "osiris.toml", f"nats://127.0.0.1:{free_port()}", [])
    c = str(path)
    notjson = osiris("publish", "-c", c, "example.recorded", "{oops")
    assert notjson.returncode == 2 and "not valid JSON" in notjson.stderr
    wrong = osiris("publish", "-c", c, "example.recorded", '{"id": 5}')
    assert wrong.returncode == 2
    assert "not a Recorded (the payload of example.recorded)" in wrong.stderr
    assert "$.id" in wrong.stderr
    wild = osiris("publish", "-c", c, "example.*", "{}")
    assert wild.returncode == 2 and "wildcard" in wild.stderr
    down = osiris("publish", "-c", c, "example.recorded", '{"id": "a"}')
    assert down.returncode == 1 and "no NATS server at" in down.stderr


def test_publish_durable_without_a_stream_says_so(tmp_path: Path, fresh_nats_url: str) -> None:
    path = write_config(tmp_path / "osiris.toml", fresh_nats_url, [])
    out = osiris("publish", "-c", str(path), "example.recorded", '{"id": "a"}')
    assert out.returncode == 1
    assert "no JetStream stream captures example.recorded" in out.stderr


def test_plugin_verb_with_a_bad_config_file_exits_2(tmp_path: Path) -> None:
    out = osiris("example", "echo", "-c", str(tmp_path / "nope.toml"), "hi")
    assert out.returncode == 2
    assert out.stderr.strip() == \
        f"osiris: config error: config file not found: {tmp_path / 'nope.toml'}"
