"""The `osiris` command: the group and its fixed verbs (`main`), and the kit every verb
uses, the core's and plugins' alike (`kit`: `-c FILE`, a connected bus, running a coroutine;
`progress`: following a long job's progress line).
One module per verb group; a verb imports the kit, never `main`."""

from __future__ import annotations

from osiris_core.cli.kit import (
    config_option,
    connected_bus,
    exit_now,
    get_config,
    pass_config,
    run_async,
    run_with_bus,
    setup_logging,
)
from osiris_core.cli.main import cli, main
from osiris_core.cli.progress import ProgressLine, following_progress

__all__ = ["ProgressLine", "cli", "config_option", "connected_bus", "exit_now",
           "following_progress", "get_config", "main", "pass_config", "run_async",
           "run_with_bus", "setup_logging"]
