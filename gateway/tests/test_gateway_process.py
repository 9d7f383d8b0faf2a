"""The gateway as a process: standalone under granian (`python -m osiris_gateway`, the
`osiris gateway` verb), and as the `gateway` plugin of `osiris run`, stopping gracefully
with an SSE client attached; plugins' routes are mounted."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from litestar import get
from osiris_gateway.app import create_app, plugin_routes
from osiris_gateway.config import GatewayConfig

from osiris_core import hookimpl
from osiris_core.config import OsirisSettings
from osiris_core.plugins import load_plugins
from osiris_core.testing import OsirisProcess, write_config

from .conftest import free_port


def _wait_up(url: str, proc: subprocess.Popen[bytes] | None = None, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"gateway exited {proc.returncode}")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise TimeoutError(url)


def test_standalone_granian_gateway(tmp_path: Path, nats_url: str, osiris_runtime: Any) -> None:
    port = free_port()
    cfg = write_config(tmp_path / "osiris.toml", nats_url, ["example"],
                       {"gateway": {"port": port, "api_key": "s3cret"}})
    proc = subprocess.Popen([sys.executable, "-m", "osiris_gateway", "-c", str(cfg)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_up(url, proc)
        assert httpx.get(url + "/v1/models").status_code == 401  # key from the config file
        r = httpx.get(url + "/v1/models", headers={"Authorization": "Bearer s3cret"})
        assert r.status_code == 200 and r.json()["object"] == "list"
        h = httpx.get(url + "/health").json()
        assert h["status"] == "error" and h["hermes_loaded"] is False  # no model actors here
    finally:
        proc.send_signal(signal.SIGINT)
        out = proc.communicate(timeout=30)[0].decode()
    assert proc.returncode == 0, out
    assert "granian" in out.lower()


def test_gateway_verb_is_registered() -> None:
    from osiris_core.cli.main import _add_plugin_commands, cli

    _add_plugin_commands()
    result = CliRunner().invoke(cli, ["gateway", "--help"])
    assert result.exit_code == 0 and "granian" in result.output


def test_osiris_run_gateway_stops_gracefully_with_a_stream_open(tmp_path: Path,
                                                                nats_url: str) -> None:
    port = free_port()
    cfg = write_config(tmp_path / "osiris.toml", nats_url, ["gateway", "example"],
                       {"gateway": {"port": port}})
    with OsirisProcess(cfg) as proc:
        url = f"http://127.0.0.1:{port}"
        health = httpx.get(url + "/health").json()
        gw = next(a for a in health["actors"] if a["name"] == "gateway")
        assert gw["state"] == "running" and gw["facts"]["url"] == url
        with httpx.stream("GET", url + "/stream/audio", timeout=30) as resp:
            assert next(resp.iter_lines()) == ": subscribed"
            proc.signal(signal.SIGTERM)
            assert proc.wait(30) == 0, proc.output()
        with pytest.raises(httpx.ConnectError):
            httpx.get(url + "/health", timeout=2)


@get("/plugin/hello", sync_to_thread=False)
def hello() -> dict[str, str]:
    return {"hello": "from a plugin"}


def test_plugin_routes_are_mounted_and_junk_is_skipped(caplog: Any) -> None:
    module = types.ModuleType("routes_plugin")

    @hookimpl
    def register_routes(register: Any) -> None:
        register(hello)
        register("not a route")

    module.register_routes = register_routes  # type: ignore[attr-defined]
    plugins = load_plugins(["routes_plugin"], extra={"routes_plugin": module})
    assert plugin_routes(plugins) == [hello]
    assert "not a Litestar handler" in caplog.text
    from litestar.testing import TestClient

    app = create_app(GatewayConfig(), settings=OsirisSettings(), plugins=plugins, bus=object())  # type: ignore[arg-type]
    with TestClient(app) as c:
        assert c.get("/plugin/hello").json() == {"hello": "from a plugin"}
        assert "/plugin/hello" in c.get("/schema/openapi.json").json()["paths"]
