"""Discovery through entry points, allow-lists, and broken plugins reported by name."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from osiris_core import Config, OsirisSettings
from osiris_core.nats.bus import Bus
from osiris_core.plugins import load_plugins
from osiris_core.testing import OsirisProcess

OSIRIS = [sys.executable, "-c", "from osiris_core.cli import main; main()"]


def osiris(*args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*OSIRIS, *args], capture_output=True, text=True, timeout=60, **kw)


def test_installed_plugin_is_discovered_with_its_package() -> None:
    loaded = load_plugins(["example"])
    rec = loaded.records["example"]
    assert rec.loaded and rec.package == "osiris-example" and rec.version == "0.1.0"
    assert loaded.catalogue.get("osiris.example.echo") is not None
    assert not loaded.records["slow"].enabled  # installed, not in the allow-list


def test_env_allow_list_narrows_the_configured_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OSIRIS_LOAD_PLUGINS", "slow")
    loaded = load_plugins(["example", "slow"])
    assert [r.name for r in loaded.active] == ["slow"]


def test_broken_plugins_are_reported_by_name_and_the_rest_load() -> None:
    loaded = load_plugins(["broken_import", "broken_register", "example"])
    loaded.collect_actors(loaded.validate_configs(Config(settings=OsirisSettings())))
    recs = loaded.records
    assert "fails to import on purpose" in (recs["broken_import"].error or "")
    assert recs["broken_import"].error.startswith("import:")  # type: ignore[union-attr]
    assert "register_actors fails on purpose" in (recs["broken_register"].error or "")
    assert [r.name for r in loaded.active] == ["example"]
    assert [a.name for a in recs["example"].actors] == ["example"]


async def test_runtime_runs_good_plugins_next_to_broken_ones(
    osiris_config: Callable[..., Config], osiris_runtime: Any, bus: Bus
) -> None:
    cfg = osiris_config(plugins=["broken_import", "broken_register", "example"])
    async with osiris_runtime(cfg) as rt:
        reply = await bus.request("osiris.example.echo", {"text": "still here"})
        assert reply["text"] == "still here"
        status = {p.name: p for p in rt.status().plugins}
        assert not status["broken_import"].loaded and "import" in (status["broken_import"].error or "")
        assert not status["broken_register"].loaded


def test_osiris_plugins_lists_the_installed_plugin_and_its_live_state(
    osiris_config: Callable[..., Config],
) -> None:
    cfg = osiris_config(plugins=["example", "broken_import"])
    assert cfg.path is not None
    with OsirisProcess(cfg.path):
        out = osiris("plugins", "-c", str(cfg.path), "--json")
    assert out.returncode == 0, out.stderr
    rows = {r["name"]: r for r in json.loads(out.stdout)}
    assert rows["example"]["package"] == "osiris-example"
    assert rows["example"]["actors"] == ["example"]
    assert rows["example"]["state"] == ["example:running"]
    assert "fails to import on purpose" in rows["broken_import"]["error"]
    table = osiris("plugins", "-c", str(cfg.path))
    assert "osiris-example" in table.stdout and "broken_import" in table.stdout


async def test_second_process_joins_the_queue_group_and_shares_load(
    osiris_config: Callable[..., Config], bus: Bus
) -> None:
    cfg = osiris_config(plugins=["example"], node="")
    assert cfg.path is not None
    with OsirisProcess(cfg.path), OsirisProcess(cfg.path, only=["example"]):
        nodes = [(await bus.request("osiris.example.echo", {"text": str(i)}))["node"]
                 for i in range(200)]
        pings = await bus.gather("$SRV.PING.example", timeout=0.5)
    counts = {n: nodes.count(n) for n in set(nodes)}
    assert len(counts) == 2, counts
    assert min(counts.values()) >= 40, counts  # NATS picks queue members at random
    assert len(pings) == 2
