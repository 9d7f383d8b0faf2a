"""pytest plugin for osiris and plugin authors (entry point `pytest11`: always available).

The async fixtures and tests need pytest-asyncio with `asyncio_mode = "auto"` in your
`[tool.pytest.ini_options]`.

Fixtures:
- `nats_url: str` — a real nats-server with JetStream for the session (or `OSIRIS_NATS_URL`).
- `fresh_nats_url: str` — a server of its own for one test (clean JetStream state; ~15 ms).
- `osiris_config` — a factory `osiris_config(plugins, tables=None, nats=None,
  name="osiris.toml", **osiris) -> Config`: writes `tmp_path/name` with `[osiris]` keys
  (`nats_url` = `nats` or `nats_url`, `plugins`, `data_dir` = `tmp_path/data`,
  `embedded_nats = "never"`, then `**osiris`) and `[plugins.<name>]` tables from `tables`,
  and returns the loaded Config (`.path` is the file, for `-c`).
- `osiris_runtime` — a factory of async context managers: `async with
  osiris_runtime(config, extra_plugins=None, only=None) as rt:` starts a `Runtime` of the
  config's plugin set in this process (`extra_plugins`: name → module, for plugins defined
  in the test; `only`: run a subset) and stops it after.
- `bus: Bus` — a connected `Bus` on `nats_url`.

Helpers:
- `write_config(path, nats_url, plugins, tables=None, **osiris) -> Path` — the file that
  `osiris_config` writes, for a test without `tmp_path` or with several files.
- `collect_events(bus, subject, count, timeout=10.0) -> list[Msg]` — subscribes and waits
  for `count` messages.
- `OsirisProcess(config_path, only=None, env=None, log_path=None)` — `osiris run -c
  config_path` in a subprocess (`with OsirisProcess(path) as proc:` waits for its ready
  line; `proc.signal`, `proc.kill`, `proc.wait`, `proc.output()`), for kill -9, SIGTERM
  and multi-process tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import msgspec
import pytest

from osiris_core.children import die_with_parent
from osiris_core.config import Config, load_config
from osiris_core.hookspecs import hookimpl
from osiris_core.nats.bus import Bus, connect
from osiris_core.nats.server import EmbeddedNats
from osiris_core.runtime.node import Runtime

__all__ = ["OsirisProcess", "collect_events", "plugin_module",
           "write_config"]

try:
    import pytest_asyncio

    async_fixture: Callable[..., Any] = pytest_asyncio.fixture
except ImportError:  # pragma: no cover - plugin authors without pytest-asyncio
    async_fixture = pytest.fixture


@pytest.fixture(scope="session")
def nats_url() -> Iterator[str]:
    """A real nats-server (JetStream on) for the whole session, or OSIRIS_NATS_URL."""
    external = os.environ.get("OSIRIS_NATS_URL")
    if external:
        yield external
        return
    with tempfile.TemporaryDirectory(prefix="osiris-nats-") as d, EmbeddedNats(Path(d)) as srv:
        yield srv.url


@pytest.fixture
def fresh_nats_url(tmp_path: Path) -> Iterator[str]:
    """A nats-server of this test's own (clean JetStream store)."""
    with EmbeddedNats(tmp_path / "nats") as srv:
        yield srv.url


def write_config(path: Path, nats_url: str, plugins: list[str],
                 tables: Mapping[str, Mapping[str, Any]] | None = None,
                 **osiris: Any) -> Path:
    """Write an osiris.toml (msgspec's TOML encoder) and return its path."""
    doc: dict[str, Any] = {"osiris": {"nats_url": nats_url, "plugins": plugins,
                                      "data_dir": str(path.parent / "data"),
                                      "embedded_nats": "never", **osiris}}
    if tables:
        doc["plugins"] = {k: dict(v) for k, v in tables.items()}
    path.write_bytes(msgspec.toml.encode(doc))
    return path


@pytest.fixture
def osiris_config(tmp_path: Path, nats_url: str) -> Callable[..., Config]:
    """Factory: `osiris_config(plugins=[...], tables={...}, nats=url)` → Config from a file."""

    def make(plugins: list[str], tables: Mapping[str, Mapping[str, Any]] | None = None,
             nats: str | None = None, name: str = "osiris.toml", **osiris: Any) -> Config:
        path = write_config(tmp_path / name, nats or nats_url, plugins, tables, **osiris)
        return load_config(path)

    return make


@pytest.fixture
def osiris_runtime() -> Callable[..., contextlib.AbstractAsyncContextManager[Runtime]]:
    """Factory of in-process runtimes: `async with osiris_runtime(config) as rt`."""

    @contextlib.asynccontextmanager
    async def run(config: Config, *, extra_plugins: Mapping[str, object] | None = None,
                  only: list[str] | None = None) -> AsyncIterator[Runtime]:
        rt = Runtime(config, extra_plugins=extra_plugins, only=only)
        await rt.start()
        try:
            yield rt
        finally:
            await rt.stop()

    return run


@async_fixture
async def bus(nats_url: str) -> AsyncIterator[Bus]:
    nc = await connect(nats_url, name="osiris-test")
    try:
        yield Bus(nc)
    finally:
        await nc.close()


async def collect_events(bus: Bus, subject: str, count: int, timeout: float = 10.0) -> list[Any]:
    """Subscribe first, then call this: waits for `count` messages on `subject`."""
    got: list[Any] = []
    done = asyncio.Event()

    async def cb(msg: Any) -> None:
        got.append(msg)
        if len(got) >= count:
            done.set()

    sub = await bus.nc.subscribe(subject, cb=cb)
    try:
        await asyncio.wait_for(done.wait(), timeout)
    finally:
        await sub.unsubscribe()
    return got


def plugin_module(name: str, *, actors: Iterable[type[Any]] = (),
                  subjects: Iterable[Any] = (), config: type[Any] | None = None) -> ModuleType:
    """A plugin made in a test, for `osiris_runtime(cfg, extra_plugins={name: module})`:
    registers `actors`, `subjects` and the `config` Struct."""
    mod = ModuleType(f"{name}_plugin")
    actors, subjects = list(actors), list(subjects)

    @hookimpl
    def register_actors(register: Any) -> None:
        for cls in actors:
            register(cls)

    @hookimpl
    def register_subjects(register: Any) -> None:
        for subject in subjects:
            register(subject)

    mod.register_actors = register_actors  # type: ignore[attr-defined]
    mod.register_subjects = register_subjects  # type: ignore[attr-defined]
    if config is not None:
        @hookimpl
        def register_config(register: Any) -> None:
            register(config)

        mod.register_config = register_config  # type: ignore[attr-defined]
    return mod


class OsirisProcess:
    """`osiris run -c CONFIG [--only ...]` as a child process; waits for its ready line."""

    def __init__(self, config_path: Path, only: list[str] | None = None,
                 env: Mapping[str, str] | None = None, log_path: Path | None = None) -> None:
        self.args = [sys.executable, "-c", "from osiris_core.cli import main; main()",
                     "run", "-c", str(config_path)]
        if only:
            self.args += ["--only", ",".join(only)]
        self.env = {**os.environ, **(env or {})}
        self.log_path = log_path or config_path.parent / f"osiris-{time.monotonic_ns()}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0, *, wait_ready: bool = True) -> OsirisProcess:
        """Spawn it; unless `wait_ready` is False, return once it printed its ready line."""
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in wait()
        self.proc = subprocess.Popen(self.args, stdout=self._log, stderr=subprocess.STDOUT,
                                     env=self.env, stdin=subprocess.DEVNULL,
                                     preexec_fn=die_with_parent)
        if not wait_ready:
            return self
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "osiris: ready" in self.output():
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"osiris run exited {self.proc.returncode}:\n{self.output()}")
            time.sleep(0.02)
        self.kill()
        raise TimeoutError(f"osiris run not ready in {timeout:g}s:\n{self.output()}")

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        if self.proc is not None:
            self._log.close()

    def wait(self, timeout: float = 60.0) -> int:
        assert self.proc is not None
        code = self.proc.wait(timeout)
        self._log.close()
        return code

    def __enter__(self) -> OsirisProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
        with contextlib.suppress(Exception):
            self._log.close()


if not TYPE_CHECKING:  # hidden from mypy, which would accept any name of this module

    def __getattr__(name: str) -> object:
        """Names that moved out of the core (deprecated here)."""
        from osiris_core.moved import moved_name

        return moved_name(__name__, name)
