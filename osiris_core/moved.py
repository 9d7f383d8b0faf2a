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

__all__ = ["MOVED", "MOVED_NAMES", "install", "moved_name"]

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
    # the application's contracts left the core for the shared `osiris_contracts`
    "contracts": "osiris_contracts.messages", "gpu_contracts": "osiris_contracts.gpu",
    "bounds": "osiris_contracts.bounds", "tables": "osiris_contracts.tables",
    "store": "osiris_contracts.store",
}
"""Old module name under `osiris_core` → the module it became (a path under `osiris_core`,
or absolute when it left the core)."""

MOVED_NAMES: dict[str, dict[str, str]] = {
    "osiris_core.subjects": {name: "osiris_contracts.subjects" for name in (
        "ADAPTERS_PUBLISHED", "ADVICE_GENERATED", "AUDIO_BYTES", "DGM_EVENTS", "FEEDBACK_SUBMIT",
        "FEEDBACK_SUBMITTED", "GPU_EVENTS", "GPU_STATUS", "HERMES_GENERATE", "MARKET_TICKS",
        "PHI3_GENERATE", "PROPOSALS_PROPOSE", "PROPOSAL_ASSESSED", "PROPOSAL_CREATED",
        "RUNS_COMPLETED", "STORE_QUERY", "TTS_SPEAK")},
    "osiris_core.protocol": {"ModelFacts": "osiris_contracts.models"},
    "osiris_core.testing": {"cuda_test_marks": "osiris_models.testing"},
}
"""Names that left a core module that stayed: module → {name: the module holding it now}."""


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
        new = MOVED[leaf] if MOVED[leaf].startswith("osiris_contracts") \
            else f"osiris_core.{MOVED[leaf]}"
        warnings.warn(f"{fullname} moved to {new}; the old path goes in osiris 0.3",
                      DeprecationWarning, stacklevel=2)
        return importlib.machinery.ModuleSpec(fullname, _Alias(new))


def moved_name(module: str, name: str) -> object:
    """A name that left `module` (its `__getattr__` asks), with a DeprecationWarning."""
    new = MOVED_NAMES.get(module, {}).get(name)
    if new is None:
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    warnings.warn(f"{module}.{name} moved to {new}.{name}; the old path goes in osiris 0.3",
                  DeprecationWarning, stacklevel=3)
    return getattr(importlib.import_module(new), name)


def install() -> None:
    """Put the finder on `sys.meta_path` once (osiris_core's import does)."""
    if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _MovedFinder())  # before an editable install's finder
