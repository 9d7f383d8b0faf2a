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
