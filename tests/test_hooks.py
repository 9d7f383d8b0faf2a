"""register_commands and register_routes reach the CLI and the route collection."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from osiris_core.plugins import load_plugins


def test_plugin_cli_verb_is_added_to_osiris() -> None:
    out = subprocess.run(
        [sys.executable, "-c", "from osiris_core.cli import main; main()", "slow-hello", "ada"],
        capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "hello ada from the slow plugin"


def test_routes_are_collected_per_plugin_and_a_broken_one_is_skipped() -> None:
    loaded = load_plugins(["slow", "broken_register", "example"])
    routes: list[Any] = []
    loaded.call_each("register_routes", lambda rec: {"register": routes.append})
    # the broken plugin registered nothing; the example's route is a Litestar handler
    assert sorted(getattr(r, "__name__", None) or r.handler_name for r in routes) == \
        ["echo_route", "slow_route"]
