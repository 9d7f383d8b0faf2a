"""Plugin discovery and registration: entry points of group `osiris`, one at a time.

pluggy's `load_setuptools_entrypoints` gives up on the first broken plugin; we import and
register each entry point ourselves, so one bad plugin is reported by name and skipped.
"""

from __future__ import annotations

import importlib
import logging
import os
import types
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import pluggy

from osiris_core import hookspecs
from osiris_core.config import Config, PluginConfig
from osiris_core.errors import ConfigError
from osiris_core.subjects import Catalogue, Subject

__all__ = [
    "ENTRY_POINT_GROUP",
    "LoadedPlugins",
    "PluginRecord",
    "discover",
    "load_plugins",
    "make_plugin_manager",
]

log = logging.getLogger("osiris.plugins")
ENTRY_POINT_GROUP = "osiris"
ENV_ALLOW = "OSIRIS_LOAD_PLUGINS"


@dataclass
class PluginRecord:
    """One plugin: where it comes from, whether it loaded, and what it registered."""

    name: str
    package: str | None = None
    version: str | None = None
    enabled: bool = True
    loaded: bool = False
    error: str | None = None
    module: Any = None
    config_schema: type[PluginConfig] = PluginConfig
    actors: list[type[Any]] = field(default_factory=list)

    def fail(self, stage: str, exc: BaseException) -> None:
        self.loaded = False
        self.error = f"{stage}: {type(exc).__name__}: {exc}"
        log.error("plugin %r skipped (%s)", self.name, self.error)


def make_plugin_manager() -> pluggy.PluginManager:
    """A fresh plugin manager with osiris' hookspecs (never a global one)."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    return pm


def discover() -> dict[str, EntryPoint]:
    """Installed plugins by entry-point name (first wins on duplicates)."""
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, ep)
    return found


def allowed_names(configured: Iterable[str] | None) -> set[str] | None:
    """The allow-list: `[osiris].plugins` narrowed by `OSIRIS_LOAD_PLUGINS` (None = all)."""
    allow = set(configured) if configured is not None else None
    env = os.environ.get(ENV_ALLOW)
    if env is not None:
        env_set = {n.strip() for n in env.split(",") if n.strip()}
        allow = env_set if allow is None else allow & env_set
    return allow


@dataclass
class LoadedPlugins:
    """The outcome of loading a plugin set."""

    pm: pluggy.PluginManager
    records: dict[str, PluginRecord]
    catalogue: Catalogue

    @property
    def active(self) -> list[PluginRecord]:
        return [r for r in self.records.values() if r.loaded]

    def call_each(
        self, hook: str, make_kwargs: Callable[[PluginRecord], dict[str, Any]],
        only: Iterable[str] | None = None,
    ) -> None:
        """Call `hook` on each loaded plugin separately; a plugin that raises is skipped."""
        names = set(only) if only is not None else None
        for rec in self.active:
            if names is not None and rec.name not in names:
                continue
            impls = [i for i in getattr(self.pm.hook, hook).get_hookimpls() if i.plugin is rec.module]
            for impl in impls:
                kwargs = make_kwargs(rec)
                try:
                    impl.function(**{k: kwargs[k] for k in impl.argnames})
                except Exception as e:  # noqa: BLE001 - a plugin must never take us down
                    rec.fail(hook, e)

    def validate_configs(self, config: Config) -> dict[str, PluginConfig]:
        """Validate every active plugin's table; ConfigError lists each bad one."""
        out: dict[str, PluginConfig] = {}
        problems: list[str] = []
        for rec in self.active:
            try:
                out[rec.name] = config.plugin(rec.name, rec.config_schema)
            except ConfigError as e:
                problems.append(str(e))
        if problems:
            raise ConfigError("\n".join(problems))
        for name in config.plugin_tables:
            if name not in self.records:
                log.warning("%s: [plugins.%s] configures a plugin that is not enabled/installed",
                            config.source, name)
        return out

    def collect_actors(self, configs: Mapping[str, PluginConfig]) -> None:
        def kwargs(rec: PluginRecord) -> dict[str, Any]:
            return {"register": rec.actors.append, "config": configs[rec.name]}

        self.call_each("register_actors", kwargs, only=configs)


def load_plugins(
    allow: Iterable[str] | None = None,
    *,
    extra: Mapping[str, types.ModuleType | object] | None = None,
) -> LoadedPlugins:
    """Import and register the allowed plugins, plus `extra` in-process ones (tests).

    `allow=None` loads every installed plugin (subject to `OSIRIS_LOAD_PLUGINS`).
    Names allowed but not installed are recorded with an install hint.
    """
    pm = make_plugin_manager()
    allow_set = allowed_names(allow)
    records: dict[str, PluginRecord] = {}
    eps = discover()
    sources: dict[str, EntryPoint | object] = {**eps, **(extra or {})}
    for name, src in sorted(sources.items()):
        rec = PluginRecord(name)
        if isinstance(src, EntryPoint):
            if src.dist is not None:
                rec.package, rec.version = src.dist.name, src.dist.version
        if allow_set is not None and name not in allow_set:
            rec.enabled = False
            records[name] = rec
            continue
        try:
            module = importlib.import_module(src.value) if isinstance(src, EntryPoint) else src
            pm.register(module, name=name)
            rec.module, rec.loaded = module, True
        except Exception as e:  # noqa: BLE001 - report and skip a broken plugin
            rec.fail("import", e)
        records[name] = rec
    for name in sorted((allow_set or set()) - set(sources)):
        rec = PluginRecord(name, error=f"not installed (pip install osiris-{name})")
        records[name] = rec
        log.warning("plugin %r is enabled but not installed (pip install osiris-%s)", name, name)
    for impl in pm.hook.register_hookspecs.get_hookimpls():  # plugins' own hooks, first
        owner = next((r for r in records.values() if r.module is impl.plugin), None)
        try:
            impl.function(**({"register": pm.add_hookspecs} if impl.argnames else {}))
        except Exception as e:  # noqa: BLE001 - a plugin must never take us down
            if owner is None:
                raise
            pm.unregister(impl.plugin)
            owner.fail("register_hookspecs", e)
    while True:  # a misspelled hook disqualifies its plugin, not the set
        try:
            pm.check_pending()
            break
        except pluggy.PluginValidationError as e:
            bad = [r for r in records.values() if r.loaded and r.module is e.plugin]
            pm.unregister(e.plugin)
            for rec in bad:
                rec.fail("check_pending", e)
            if not bad:
                raise

    loaded = LoadedPlugins(pm, records, Catalogue())

    def config_kwargs(rec: PluginRecord) -> dict[str, Any]:
        def register(schema: type[PluginConfig]) -> None:
            if not (isinstance(schema, type) and issubclass(schema, PluginConfig)):
                raise TypeError(f"config schema must subclass PluginConfig, got {schema!r}")
            rec.config_schema = schema

        return {"register": register}

    loaded.call_each("register_config", config_kwargs)

    def subject_kwargs(rec: PluginRecord) -> dict[str, Any]:
        def register(subject: Subject) -> None:
            loaded.catalogue.add(subject)

        return {"register": register}

    loaded.call_each("register_subjects", subject_kwargs)
    return loaded
