"""`osiris.toml` → typed, frozen settings; every error names the file, table and key.

Precedence: built-in defaults < the file < environment variables (secrets and endpoints).
Each plugin's `[plugins.<name>]` table is validated against the Struct the plugin registers
through `register_config` (or `PluginConfig` when it registers none).
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

import msgspec

from osiris_core.errors import ConfigError

__all__ = [
    "DEFAULT_CONFIG_FILE",
    "Config",
    "OsirisSettings",
    "PluginConfig",
    "load_config",
]

DEFAULT_CONFIG_FILE = "osiris.toml"
P = TypeVar("P", bound="PluginConfig")


class OsirisSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The `[osiris]` table."""

    nats_url: str = "nats://127.0.0.1:4222"
    """One server URL, or several separated by commas (a cluster: any of them will do)."""
    data_dir: str = "./osiris_data"
    plugins: list[str] = []
    embedded_nats: Literal["auto", "always", "never"] = "auto"
    nats_token: str = ""
    nats_creds: str = ""
    """A JWT `.creds` file (operator mode)."""
    nats_user: str = ""
    """User name (with `nats_password`); in a `osiris nats-config` server, the role."""
    nats_password: str = ""
    nats_nkey: str = ""
    """An NKey seed file (`SU…`): the server knows the user by its public key."""
    nats_tls_ca: str = ""
    """CA bundle that verifies the server's certificate (default: the system's CAs)."""
    nats_tls_cert: str = ""
    """Client certificate (PEM) for servers that verify clients; with `nats_tls_key`."""
    nats_tls_key: str = ""
    nats_tls_hostname: str = ""
    """Name to verify the server's certificate against, when the URL holds an IP."""
    nats_inbox_prefix: str = ""
    """Prefix of this process's reply inboxes (default `_INBOX`); `osiris nats-config` roles
    read only their own (`_INBOX_<role>`)."""
    node: str = ""
    stream_replicas: int = 1
    """Replicas of each JetStream stream osiris declares: 3 on a 3-node cluster, so a node
    can die without losing an acknowledged event (at most the cluster's size, at most 5)."""
    shutdown_timeout_s: float = 30.0
    log_level: str = "INFO"
    metrics_listen: str = ""
    """`host:port` where this process serves its actors' Prometheus metrics (`GET /metrics`);
    empty: none, unless `ENABLE_METRICS` is truthy and no gateway runs in the process (then
    0.0.0.0:9464). `ENABLE_METRICS` false turns it off (docs/observability.md#metrics)."""

    __env__: ClassVar[dict[str, str]] = {
        "nats_url": "OSIRIS_NATS_URL",
        "data_dir": "OSIRIS_DATA_DIR",
        "nats_token": "OSIRIS_NATS_TOKEN",
        "nats_creds": "OSIRIS_NATS_CREDS",
        "nats_user": "OSIRIS_NATS_USER",
        "nats_password": "OSIRIS_NATS_PASSWORD",
        "nats_nkey": "OSIRIS_NATS_NKEY",
        "nats_tls_ca": "OSIRIS_NATS_TLS_CA",
        "nats_tls_cert": "OSIRIS_NATS_TLS_CERT",
        "nats_tls_key": "OSIRIS_NATS_TLS_KEY",
        "nats_tls_hostname": "OSIRIS_NATS_TLS_HOSTNAME",
        "nats_inbox_prefix": "OSIRIS_NATS_INBOX_PREFIX",
        "log_level": "OSIRIS_LOG_LEVEL",
        "metrics_listen": "OSIRIS_METRICS_LISTEN",
    }


class PluginConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Base of every plugin's config Struct: the actor knobs the framework itself reads.

    Subclass it, add your fields with defaults, and name env-overridable secrets in
    `__env__` (`{"redis_url": "OSIRIS_REDIS_URL"}`).
    """

    max_concurrency: int = 64
    """Requests and events one actor handles at once; more wait (backpressure)."""
    request_wait_s: float = 30.0
    """How long a request waits for a starting, paused or restarting actor before a 503."""
    max_restarts: int = 5
    """Crashes tolerated within `restart_window_s`; one more marks the actor failed."""
    restart_window_s: float = 60.0
    backoff_initial_s: float = 0.2
    backoff_max_s: float = 10.0
    health_interval_s: float = 0.0
    """Seconds between calls of the actor's `health()` while running; 0 turns it off."""
    max_deliver: int = 5
    """Deliveries of one durable event before it is dead-lettered (`osiris.deadletter`)."""
    ack_wait_s: float = 30.0
    """JetStream redelivers a durable event not acked within this time (the handler still
    running, or its process dead): longer than your slowest handler of a batch."""

    __env__: ClassVar[dict[str, str]] = {}


@dataclass(frozen=True)
class Config:
    """A loaded configuration: core settings plus the raw plugin tables."""

    settings: OsirisSettings
    path: Path | None = None
    plugin_tables: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def source(self) -> str:
        return str(self.path) if self.path else "built-in defaults"

    @property
    def data_dir(self) -> Path:
        d = Path(self.settings.data_dir).expanduser()
        if not d.is_absolute() and self.path is not None:
            d = self.path.parent / d
        return d.resolve()

    def plugin(self, name: str, schema: type[P]) -> P:
        """Validate `[plugins.<name>]` against `schema`; raise ConfigError naming the key."""
        table = dict(self.plugin_tables.get(name, {}))
        for key, env in schema.__env__.items():
            if env in os.environ:
                table[key] = os.environ[env]
        return _convert(table, schema, self.source, f"plugins.{name}")

    def with_settings(self, **changes: Any) -> Config:
        return Config(
            msgspec.structs.replace(self.settings, **changes), self.path, self.plugin_tables
        )


def load_config(path: str | os.PathLike[str] | None = None, *, search_cwd: bool = True) -> Config:
    """Load `path`, or `./osiris.toml` when it exists (and `search_cwd`), or the defaults."""
    defaults = tomllib.loads(resources.files(__package__).joinpath("defaults.toml").read_text())
    file_path: Path | None = None
    doc: dict[str, Any] = {}
    if path is not None:
        file_path = Path(path)
        if not file_path.is_file():
            raise ConfigError(f"config file not found: {file_path}")
    elif search_cwd and Path(DEFAULT_CONFIG_FILE).is_file():
        file_path = Path(DEFAULT_CONFIG_FILE)
    source = str(file_path) if file_path else "built-in defaults"
    if file_path is not None:
        try:
            doc = tomllib.loads(file_path.read_text())
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{file_path}: invalid TOML: {e}") from None
        file_path = file_path.resolve()
    for key in doc:
        if key not in ("osiris", "plugins"):
            raise ConfigError(f"{source}: unknown table [{key}] (expected [osiris] or [plugins.*])")
    osiris_table = {**defaults["osiris"], **_table(doc, "osiris", source)}
    for key, env in OsirisSettings.__env__.items():
        if env in os.environ:
            osiris_table[key] = os.environ[env]
    settings = _convert(osiris_table, OsirisSettings, source, "osiris")
    plugins = _table(doc, "plugins", source)
    for name, table in plugins.items():
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: [plugins] key {name!r} must be a table [plugins.{name}]")
    return Config(settings, file_path, plugins)


def _table(doc: dict[str, Any], key: str, source: str) -> dict[str, Any]:
    value = doc.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: {key!r} must be a table [{key}]")
    return value


_AT = re.compile(r"\s*- at `\$(?P<path>[^`]*)`$")
_UNKNOWN = re.compile(r"Object contains unknown field `(?P<key>[^`]+)`")
_MISSING = re.compile(r"Object missing required field `(?P<key>[^`]+)`")

T = TypeVar("T")


def _convert(table: dict[str, Any], schema: type[T], source: str, where: str) -> T:
    try:
        return msgspec.convert(table, schema, strict=False)
    except msgspec.ValidationError as e:
        raise ConfigError(f"{source}: [{where}] {describe_validation_error(e)}") from None


def describe_validation_error(err: msgspec.ValidationError) -> str:
    """Turn msgspec's message into `key 'x': what is wrong` (also used for request errors)."""
    key, problem = validation_error_field(err)
    return f"key {key!r}: {problem}" if key else problem


def validation_error_field(err: msgspec.ValidationError) -> tuple[str | None, str]:
    """(dotted field path or None, message without the `$.path` suffix)."""
    msg = str(err)
    path = ""
    m = _AT.search(msg)
    if m:
        path = m.group("path").lstrip(".")
        msg = msg[: m.start()]
    for pattern, text in ((_UNKNOWN, "unknown key"), (_MISSING, "required key is missing")):
        u = pattern.search(msg)
        if u:
            path = f"{path}.{u.group('key')}" if path else u.group("key")
            msg = text
    return (path or None), msg[:1].lower() + msg[1:]
