"""`osiris demo`: the whole loop on CPU, as a user runs it (subprocess, real everything)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from osiris_core.nats.server import free_port

OSIRIS = [sys.executable, "-c", "from osiris_core.cli import main; main()"]


def http(method: str, url: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


@pytest.mark.parametrize("kind", ["tiny", pytest.param("small", marks=pytest.mark.small)])
def test_demo_runs_the_whole_loop_and_answers_through_the_gateway(
        kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    gateway_installed = subprocess.run(
        [sys.executable, "-c", "import osiris_gateway"], capture_output=True).returncode == 0
    port = free_port()
    (tmp_path / "osiris.toml").write_text(f"[plugins.gateway]\nport = {port}\n"
                                          if gateway_installed else "")
    flags = ["--tiny"] if kind == "tiny" else []
    if kind == "small":  # the tier's build, which the demo finds up to date (no second build)
        (tmp_path / "osiris_data").mkdir()
        (tmp_path / "osiris_data" / "models").symlink_to(request.getfixturevalue("small_models"))
    log = (tmp_path / "demo.out").open("w")
    proc = subprocess.Popen([*OSIRIS, "demo", "-c", "osiris.toml", "--status-every", "2", *flags],
                            cwd=tmp_path,
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    out = tmp_path / "demo.out"
    try:
        deadline = time.monotonic() + 300  # first run builds the tiny models
        while "Ctrl-C stops the demo." not in out.read_text():
            assert proc.poll() is None, out.read_text()[-3000:]
            assert time.monotonic() < deadline, out.read_text()[-3000:]
            time.sleep(0.2)
        text = out.read_text()
        assert "osiris demo — NATS at nats://127.0.0.1:" in text
        assert "plugin skipped: broken_import" in text  # reported, not fatal
        assert "demo: preparing slow" in text  # register_demo ran
        assert "request test.slow.count '{\"n\": 3}'" in text  # and its hint is offered
        assert (tmp_path / "osiris_data" / "slow-demo-ready").read_text() == "ok"
        table = text[text.index("ACTOR"):text.index("open:")]
        rows = {ln.split()[0]: ln.split()[2] for ln in table.splitlines()[1:] if ln.strip()}
        assert rows and all(state == "running" for state in rows.values()), table
        if gateway_installed:
            assert f"http://127.0.0.1:{port}" in text
            opened = text[text.index("open:"):].splitlines()[1].split()
            assert opened == ["desk", f"http://127.0.0.1:{port}/desk"], opened  # the desk first
            status, health = http("GET", f"http://127.0.0.1:{port}/health")
            assert status == 200 and health["status"] in ("ok", "partial_error")
            if "hermes" in rows and "phi3" in rows and "orchestrator" in rows:
                assert health["status"] == "ok" and health["hermes_loaded"]
                status, body = http("POST", f"http://127.0.0.1:{port}/propose_trade_adjustments/",
                                    {"prompt": "XYZ gapped up on volume"})
                assert status == 200, body
                assert {"transaction_id", "phi3_proposal",
                                          "hermes_assessment"} <= set(body)
                if kind == "small":  # a real model: the prompt's ticker, numbers, English
                    p = body["phi3_proposal"]
                    assert p["ticker"] == "XYZ" and 0 < p["new_stop_pct"] <= 10, p
                    words = body["hermes_assessment"].lower().split()
                    assert len(words) >= 10 and {"the", "a", "is", "to", "and", "of"} & set(words), body
                    print(f"\n  demo (small): {p}\n  hermes: {body['hermes_assessment']}")
        while "demo t+" not in out.read_text():  # the progress line
            assert proc.poll() is None
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(90) == 0, out.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    assert "osiris demo stopped." in out.read_text()
    assert "Traceback" not in out.read_text(), out.read_text()[-3000:]
    assert (tmp_path / "osiris_data" / "nats" / "jetstream").is_dir()


def test_demo_preparation_proposes_config_and_the_user_file_wins(tmp_path: Path) -> None:
    from osiris_core import OsirisSettings
    from osiris_core.config import Config
    from osiris_core.ops.demo import DemoOptions, prepare_plugins

    pytest.importorskip("osiris_testplugins")
    settings = OsirisSettings(data_dir=str(tmp_path / "data"))
    tiny = DemoOptions(tiny=True)  # the model plugins prepare too: seconds, not a small build
    proposed, hints = prepare_plugins(Config(settings), tiny)
    assert ("slow", "request test.slow.count '{\"n\": 3}'", "a token stream") in hints
    assert proposed.plugin_tables["slow"] == {"delay_s": 0.01}
    mine, _ = prepare_plugins(Config(settings, plugin_tables={"slow": {"delay_s": 2.0}}), tiny)
    assert mine.plugin_tables["slow"] == {"delay_s": 2.0}


def test_prepare_functions_get_the_demo_options_when_they_ask_for_them() -> None:
    from osiris_core.ops.demo import _takes_options

    def old(data_dir: Path) -> dict[str, Any]:
        return {}

    def new(data_dir: Path, options: Any) -> dict[str, Any]:
        return {}

    assert not _takes_options(old) and _takes_options(new)
    assert _takes_options(lambda *a: {}) and not _takes_options(lambda d, *, k=1: {})
