"""`osiris demo` starts every installed plugin on an embedded NATS and stops cleanly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_demo_runs_installed_plugins_and_prints_where_to_look(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", "from osiris_core.cli import main; main()", "demo",
         "--duration", "2"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "osiris demo — NATS at nats://127.0.0.1:" in out.stdout
    assert "example" in out.stdout and "running" in out.stdout
    assert "plugin skipped: broken_import" in out.stdout  # reported, not fatal
    assert "osiris request osiris.example.control" in out.stdout
    assert out.stdout.rstrip().endswith("osiris demo stopped.")
    assert (tmp_path / "osiris_data" / "nats" / "jetstream").is_dir()
    # register_demo: the slow plugin prepared its assets and its proposed config was used
    assert "demo: preparing slow" in out.stdout
    assert (tmp_path / "osiris_data" / "slow-demo-ready").read_text() == "ok"


def test_demo_preparation_proposes_config_and_the_user_file_wins(tmp_path: Path) -> None:
    from osiris_core import OsirisSettings
    from osiris_core.config import Config
    from osiris_core.demo import prepare_plugins

    settings = OsirisSettings(data_dir=str(tmp_path / "data"))
    proposed = prepare_plugins(Config(settings))
    assert proposed.plugin_tables["slow"] == {"delay_s": 0.01}
    mine = prepare_plugins(Config(settings, plugin_tables={"slow": {"delay_s": 2.0}}))
    assert mine.plugin_tables["slow"] == {"delay_s": 2.0}
