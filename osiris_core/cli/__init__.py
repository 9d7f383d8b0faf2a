"""The `osiris` command: the group and its fixed verbs (`main`), and the kit every verb
uses, the core's and plugins' alike (`kit`: `-c FILE`, a connected bus, running a coroutine).
One module per verb group; a verb imports the kit, never `main`."""

from __future__ import annotations

from osiris_core.cli.kit import (
    config_option,
    connected_bus,
    exit_now,
    get_config,
    pass_config,
    run_async,
    setup_logging,
)
from osiris_core.cli.main import cli, main

__all__ = ["cli", "config_option", "connected_bus", "exit_now", "get_config", "main",
           "pass_config", "run_async", "setup_logging"]
