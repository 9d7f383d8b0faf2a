"""Bad config and bad input: clear one-line errors and exit codes; the CLI verbs."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from osiris_core import BadRequest, Config, ConfigError, load_config
from osiris_core.nats.bus import Bus, nats_reachable
from osiris_core.nats.server import free_port
from osiris_core.testing import OsirisProcess

OSIRIS = [sys.executable, "-c", "from osiris_core.cli import main; main()"]


def osiris(*args: str, timeout: float = 60, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*OSIRIS, *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, **kw)


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "osiris.toml"
    p.write_text(text)
    return p


@pytest.mark.parametrize(("toml", "expected"), [
    ('[osiris]\nplugins = ["example"]\n[plugins.example]\nledgr = "x"\n',
     "[plugins.example] key 'ledgr': unknown key"),
    ('[osiris]\nplugins = ["example"]\n[plugins.example]\nmax_concurrency = "lots"\n',
     "[plugins.example] key 'max_concurrency': expected `int`, got `str`"),
    ('[osiris]\nplugins = "example"\n', "[osiris] key 'plugins': expected `array`, got `str`"),
    ('[osiris]\nnats = "x"\n', "[osiris] key 'nats': unknown key"),
    ('[osirs]\n', "unknown table [osirs]"),
    ('[osiris\n', "invalid TOML"),
])
def test_bad_config_exits_non_zero_with_one_line_naming_file_table_key(
    tmp_path: Path, toml: str, expected: str
) -> None:
    path = write(tmp_path, toml)
    out = osiris("run", "-c", str(path))
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert str(path.resolve() if "invalid TOML" not in expected else path) in lines[0]
    assert expected in lines[0]


def test_missing_config_file(tmp_path: Path) -> None:
    out = osiris("run", "-c", str(tmp_path / "nope.toml"))
    assert out.returncode == 2
    assert out.stderr.strip() == f"osiris: config error: config file not found: {tmp_path / 'nope.toml'}"


def test_env_overrides_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, '[osiris]\nnats_url = "nats://127.0.0.1:1"\n')
    monkeypatch.setenv("OSIRIS_NATS_URL", "nats://127.0.0.1:2")
    monkeypatch.setenv("OSIRIS_NATS_TOKEN", "s3cret")
    cfg = load_config(path)
    assert cfg.settings.nats_url == "nats://127.0.0.1:2" and cfg.settings.nats_token == "s3cret"
    assert cfg.data_dir == (tmp_path / "osiris_data").resolve()  # relative to the file


def test_plugin_config_validated_against_its_struct() -> None:
    from osiris_example.actor import ExampleConfig

    cfg = Config(settings=load_config().settings, plugin_tables={"example": {"ledger": 3}})
    with pytest.raises(ConfigError, match=r"\[plugins.example\] key 'ledger': expected `str`"):
        cfg.plugin("example", ExampleConfig)


async def test_malformed_request_names_the_field_and_the_actor_keeps_serving(
    osiris_config: Callable[..., Config], osiris_runtime: Any, bus: Bus,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with osiris_runtime(osiris_config(plugins=["example"])):
        with pytest.raises(BadRequest) as err:
            await bus.request("osiris.example.echo", {"text": 5})
        assert err.value.code == 422 and err.value.field == "text"
        assert "field 'text': expected `str`, got `int`" in err.value.message
        with pytest.raises(BadRequest) as err:
            await bus.request("osiris.example.echo", {"text": "a", "colour": "red"})
        assert err.value.field == "colour"
        with pytest.raises(BadRequest, match="invalid JSON"):
            await bus.request("osiris.example.echo", b"{not json")
        assert (await bus.request("osiris.example.echo", {"text": "ok"}))["text"] == "ok"
    assert any("bad request on osiris.example.echo" in r.getMessage() for r in caplog.records)


async def test_micro_discovery_ping_info_stats(
    osiris_config: Callable[..., Config], osiris_runtime: Any, bus: Bus
) -> None:
    async with osiris_runtime(osiris_config(plugins=["example", "crashy"])):
        await bus.request("osiris.example.echo", {"text": "count me"})
        pings = [json.loads(m.data) for m in await bus.gather("$SRV.PING", timeout=0.3)]
        names = {p["name"] for p in pings}
        assert {"example", "crashy", "steady"} <= names
        assert all(p["type"] == "io.nats.micro.v1.ping_response" for p in pings)
        info = await bus.request("$SRV.INFO.example")
        eps = {e["subject"]: e["queue_group"] for e in info["endpoints"]}
        assert eps == {"osiris.example.control": "example", "osiris.example.echo": "example"}
        stats = await bus.request("$SRV.STATS.example")
        echo = next(e for e in stats["endpoints"] if e["name"] == "echo")
        assert echo["num_requests"] == 1 and echo["processing_time"] > 0


async def test_cli_request_tail_and_errors(
    osiris_config: Callable[..., Config], bus: Bus
) -> None:
    cfg = osiris_config(plugins=["example"])
    c = str(cfg.path)
    with OsirisProcess(cfg.path):
        loop = asyncio.get_running_loop()
        ok = await loop.run_in_executor(
            None, lambda: osiris("request", "-c", c, "osiris.example.echo", '{"text": "hey"}'))
        assert ok.returncode == 0 and json.loads(ok.stdout)["text"] == "hey"
        bad = await loop.run_in_executor(
            None, lambda: osiris("request", "-c", c, "osiris.example.echo", '{"text": 1}'))
        assert bad.returncode == 1 and "422" in bad.stderr and "'text'" in bad.stderr
        nobody = await loop.run_in_executor(
            None, lambda: osiris("request", "-c", c, "osiris.nobody.here", "{}"))
        assert nobody.returncode == 1 and "no actor is serving osiris.nobody.here" in nobody.stderr
        notjson = await loop.run_in_executor(
            None, lambda: osiris("request", "-c", c, "osiris.example.echo", "{oops"))
        assert notjson.returncode == 2 and "not valid JSON" in notjson.stderr

        tail = subprocess.Popen([*OSIRIS, "tail", "-c", c, "demo.>", "--count", "2"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert tail.stderr is not None
        assert "tailing demo.>" in tail.stderr.readline()  # printed once subscribed
        await bus.publish("demo.a", {"x": 1})
        await bus.publish("demo.b", {"x": 2})
        out, _ = await loop.run_in_executor(None, lambda: tail.communicate(timeout=10))
        assert tail.returncode == 0
        assert out.splitlines() == ['demo.a {"x": 1}', 'demo.b {"x": 2}']


def test_run_embeds_nats_when_the_url_is_unreachable(tmp_path: Path) -> None:
    port = free_port()
    path = write(tmp_path, f'[osiris]\nnats_url = "nats://127.0.0.1:{port}"\nplugins = ["example"]\n')
    assert not nats_reachable(f"nats://127.0.0.1:{port}")
    proc = OsirisProcess(path).start()
    try:
        assert "started embedded nats-server" in proc.output()
        out = osiris("request", "-c", str(path), "osiris.example.echo", '{"text": "e"}')
        assert json.loads(out.stdout)["text"] == "e"
        assert (tmp_path / "osiris_data" / "nats" / "jetstream").is_dir()
        proc.signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert not nats_reachable(f"nats://127.0.0.1:{port}")  # stopped with us
    finally:
        proc.kill()


def test_subjects_catalogue_is_printed(tmp_path: Path) -> None:
    out = osiris("subjects")
    assert out.returncode == 0
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["SUBJECT", "KIND", "REQUEST/EVENT", "REPLY", "OWNER", "DURABLE",
                                "(STREAM)"]
    rows = {ln.split()[0]: ln.split() for ln in lines[1:]}
    assert rows["osiris.hermes.generate"][1:5] == ["service", "GenerateRequest", "GenerateReply",
                                                  "hermes"]
    assert rows["phi3.feedback.submitted"][-2:] == ["yes", "(OSIRIS_PHI3_FEEDBACK_SUBMITTED)"]
    assert rows["osiris.example.echo"][4] == "example"  # plugins' subjects are included
    full = json.loads(osiris("subjects", "--json").stdout)
    gen = next(s for s in full if s["subject"] == "osiris.hermes.generate")
    assert gen["request_schema"]["$defs"]["GenerateRequest"]["required"] == ["prompt"]


def test_demo_ignores_a_production_osiris_toml_in_the_working_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, '[osiris]\nplugins = ["hermes"]\n[plugins.hermes]\nmodel = "/srv/8B"\n')
    monkeypatch.chdir(tmp_path)
    assert load_config().plugin_tables == {"hermes": {"model": "/srv/8B"}}
    defaults = load_config(search_cwd=False)
    assert defaults.path is None and defaults.plugin_tables == {}
    assert "hermes" in defaults.settings.plugins  # the built-in plugin set


def test_kill_9_of_osiris_run_takes_its_embedded_nats_server_along(tmp_path: Path) -> None:
    port = free_port()
    path = write(tmp_path, f'[osiris]\nnats_url = "nats://127.0.0.1:{port}"\nplugins = ["example"]\n')
    proc = OsirisProcess(path).start()
    assert nats_reachable(f"nats://127.0.0.1:{port}")
    proc.kill()  # SIGKILL: no chance to stop the child itself
    assert proc.wait(10) == -9
    for _ in range(100):
        if not nats_reachable(f"nats://127.0.0.1:{port}", timeout=0.1):
            break
        time.sleep(0.05)
    assert not nats_reachable(f"nats://127.0.0.1:{port}", timeout=0.1)
