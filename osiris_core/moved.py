"""The old flat module paths (`osiris_core.bus`, `osiris_core.natsserver`, …), still
importable after the core moved into subpackages: each resolves to the module it became, the
same module object, with a DeprecationWarning naming the new path. Removal: osiris 0.3."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from collections.abc import Sequence
from types import ModuleType

__all__ = ["MOVED", "install"]

MOVED: dict[str, str] = {
    "supervisor": "runtime.supervisor", "dispatch": "runtime.dispatch",
    "events": "runtime.events", "control": "runtime.control",
    "lifecycle": "runtime.lifecycle", "slots": "runtime.slots",
    "bus": "nats.bus", "connection": "nats.connection", "jsacks": "nats.acks",
    "watch": "nats.watch", "micro": "nats.micro", "streams": "nats.streams",
    "natsserver": "nats.server",
    "logs": "observability.logs", "logctx": "observability.logctx",
    "metrics": "observability.metrics", "tracing": "observability.tracing",
    "sentry": "observability.sentry", "profiling": "observability.profiling",
    "usage": "observability.usage", "quiet": "observability.quiet",
    "natsconfig": "ops.natsconfig", "deadletters": "ops.deadletters",
    "catalogue": "ops.catalogue", "demo": "ops.demo",
    "clikit": "cli.kit", "cli_deadletter": "cli.deadletter",
    "cli_natsconfig": "cli.natsconfig", "cli_profile": "cli.profile",
    "cli_streams": "cli.streams",
    "natscluster": "testing.cluster", "otlp_receiver": "testing.otlp",
}
"""Old module name under `osiris_core` → its path under `osiris_core` now."""


class _Alias(importlib.abc.Loader):
    def __init__(self, new: str) -> None:
        self.new = new

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(self.new)
        self.real_spec = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        module.__spec__ = self.real_spec  # the import system set the old name's spec


class _MovedFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        package, _, leaf = fullname.rpartition(".")
        if package != "osiris_core" or leaf not in MOVED:
            return None
        new = f"osiris_core.{MOVED[leaf]}"
        warnings.warn(f"{fullname} moved to {new}; the old path goes in osiris 0.3",
                      DeprecationWarning, stacklevel=2)
        return importlib.machinery.ModuleSpec(fullname, _Alias(new))


def install() -> None:
    """Put the finder on `sys.meta_path` once (osiris_core's import does)."""
    if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _MovedFinder())  # before an editable install's finder
