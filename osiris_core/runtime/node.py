"""Runtime: one process running a set of actors on the bus.

`Runtime.start()` loads the plugin set, validates every config table, connects to NATS (or
embeds a server), declares the JetStream streams of durable subjects, starts every actor
under supervision and answers `osiris.runtime.status` and `osiris.runtime.profile.<node>`.
`stop()` drains gracefully.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlparse

import msgspec
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from osiris_core.config import Config
from osiris_core.errors import ConfigError, OsirisError
from osiris_core.nats.bus import Bus, encode
from osiris_core.nats.connection import (
    nats_reachable,
    open_connection,
    plain_settings,
    secured,
    server_urls,
)
from osiris_core.nats.server import EmbeddedNats
from osiris_core.nats.streams import ensure_streams
from osiris_core.observability import logctx, tracing
from osiris_core.observability.metrics import (
    DEFAULT_LISTEN,
    MetricsServer,
    ProcessMetrics,
    metrics_enabled,
    parse_listen,
)
from osiris_core.plugins import LoadedPlugins, load_plugins
from osiris_core.protocol import NodeStatus, PluginStatus, ProfileArgs
from osiris_core.runtime.lifecycle import State
from osiris_core.runtime.supervisor import ActorCell
from osiris_core.subjects import RUNTIME_STATUS, runtime_profile

__all__ = ["Runtime", "exit_guard"]

log = logging.getLogger("osiris.runtime")
EMBEDDED_CHECK_S = 0.5   # how often `osiris run` looks at its embedded server
EMBEDDED_BACKOFF_S = 0.5
_profile_args = msgspec.json.Decoder(ProfileArgs)


def exit_guard(timeout: float) -> threading.Timer:
    """Make the process end within `timeout` seconds from now, whatever is left: a thread
    (model generation in an executor), a task that ignores cancellation or a hung close
    would otherwise keep it alive after the node stopped (asyncio.run and the interpreter
    join executor threads without a bound). Logs what it abandons, then exits 0."""

    def abandon() -> None:
        threads = [t.name for t in threading.enumerate()
                   if t is not threading.current_thread() and not t.daemon
                   and t is not threading.main_thread()]
        log.warning("shutdown: still running %gs after the signal: abandoning %d threads (%s)"
                    " and exiting", timeout, len(threads), ", ".join(threads[:8]) or "none")
        logging.shutdown()
        os._exit(0)

    timer = threading.Timer(max(timeout - 0.5, 0.5), abandon)  # exit *within* the bound
    timer.daemon = True
    timer.start()
    return timer


class Runtime:
    """A set of supervised actors sharing one NATS connection."""

    def __init__(
        self,
        config: Config,
        *,
        only: list[str] | None = None,
        extra_plugins: Mapping[str, object] | None = None,
        load_all: bool = False,
    ) -> None:
        self.config = config
        s = config.settings
        self.node = s.node or f"{socket.gethostname()}-{os.getpid()}"
        allow = None if load_all else (only if only is not None else list(s.plugins))
        # the default service name of this process's spans tells `--only` processes apart
        self.service_name = "osiris" + "".join(f"-{n}" for n in only or ())
        if extra_plugins and allow is not None and only is None:
            allow = [*allow, *extra_plugins]
        self.plugins: LoadedPlugins = load_plugins(allow, extra=extra_plugins)
        self.configs = self.plugins.validate_configs(config)
        self.plugins.collect_actors(self.configs)
        # log lines and error reports of this process name its node and its actors
        logctx.set_node(self.node)
        logctx.add_actors(cls.name for rec in self.plugins.active for cls in rec.actors)
        self.cells: list[ActorCell] = []
        self.embedded: EmbeddedNats | None = None
        self.bus: Bus | None = None
        self.nats_url = s.nats_url
        self.started = time.time()
        self._status_sub: Subscription | None = None
        self._profile_sub: Subscription | None = None
        self._profiles: set[asyncio.Task[None]] = set()
        self._stopped = asyncio.Event()
        self._keeper: asyncio.Task[None] | None = None
        self.metrics = ProcessMetrics()
        self.metrics_listen = self._metrics_listen()
        self._metrics_server: MetricsServer | None = None

    def _metrics_listen(self) -> str:
        """Where this process serves its metrics itself: `metrics_listen`, else
        `DEFAULT_LISTEN` when `ENABLE_METRICS` is truthy and no actor of this process serves
        them (the gateway's /metrics); "" for nowhere. `ENABLE_METRICS` false: nowhere."""
        enabled = metrics_enabled()
        if enabled is False:
            return ""
        listen = self.config.settings.metrics_listen.strip()
        if not listen and enabled and not any(
                cls.exposes_metrics for rec in self.plugins.active for cls in rec.actors):
            listen = DEFAULT_LISTEN
        if listen:
            try:
                parse_listen(listen)
            except ValueError as e:
                raise ConfigError(f"{self.config.source}: [osiris] key 'metrics_listen' "
                                  f"(OSIRIS_METRICS_LISTEN): {e}") from None
        return listen

    def _serve_metrics(self) -> None:
        """Start the metrics endpoint; a port that is taken is logged, and the node runs on
        without one (metrics are not worth refusing to serve requests for)."""
        if not self.metrics_listen:
            return
        host, port = parse_listen(self.metrics_listen)
        server = MetricsServer(self.metrics.registry, host, port)
        try:
            server.start()
        except OSError as e:
            log.error("metrics: cannot listen on %s:%d (%s): is port %d in use? Set "
                      "[osiris].metrics_listen (OSIRIS_METRICS_LISTEN) to a free host:port; "
                      "running without a metrics endpoint", host, port, e.strerror or e, port)
            return
        self._metrics_server = server
        log.info("metrics: serving %s", server.url)

    # --- start ------------------------------------------------------------------------------
    def _nats_url(self) -> str:
        """The URL to connect to; starts the embedded server when `embedded_nats` says so.

        `auto` embeds only for one local URL without credentials or TLS: settings that carry
        them (or several servers) name a real deployment, and one that is merely down must
        not be replaced by an open, empty server of our own."""
        s = self.config.settings
        if s.embedded_nats == "never" or (s.embedded_nats == "auto" and nats_reachable(s.nats_url)):
            return s.nats_url
        urls = server_urls(s.nats_url)
        if s.embedded_nats == "auto" and (len(urls) > 1 or secured(s)):
            why = "several servers are listed" if len(urls) > 1 else "credentials or TLS are set"
            raise OsirisError(f"no NATS server at {s.nats_url}: not starting an embedded one, "
                              f"since {why} (a real deployment that is down); start it, or set "
                              "embedded_nats = \"always\" for a private server of this process")
        parsed = urlparse(urls[0] if urls else "")
        port = (parsed.port or 4222) if s.embedded_nats == "auto" else 0
        host = parsed.hostname or "127.0.0.1"
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise OsirisError(f"no NATS server at {s.nats_url}: start it, or set nats_url to a "
                              "local address so osiris can embed one")
        self.embedded = EmbeddedNats(self.config.data_dir / "nats", host="127.0.0.1", port=port)
        url = self.embedded.start()
        log.info("started embedded nats-server at %s (JetStream in %s)", url,
                 self.embedded.store_dir)
        self._keeper = asyncio.get_running_loop().create_task(self._keep_embedded())
        return url

    async def _keep_embedded(self) -> None:
        """Start our embedded server again if it dies (same port, same JetStream store): the
        connections reconnect on their own and the streams recover from their files, so
        nothing JetStream acknowledged is lost."""
        server = self.embedded
        assert server is not None
        backoff = EMBEDDED_BACKOFF_S
        while True:
            await asyncio.sleep(EMBEDDED_CHECK_S)
            proc = server.proc
            if proc is None or proc.poll() is None:
                backoff = EMBEDDED_BACKOFF_S
                continue
            log.error("the embedded nats-server exited (code %s): starting it again on %s",
                      proc.returncode, server.url)
            try:
                await asyncio.to_thread(server.start)
                log.warning("restarted the embedded nats-server at %s", server.url)
            except OsirisError as e:
                log.error("could not restart the embedded nats-server (%s): again in %.1fs",
                          e, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)

    async def start(self) -> None:
        tracing.setup(self.service_name, instance=self.node)  # when OTEL_* asks for it
        self.nats_url = self._nats_url()
        s = self.config.settings
        if self.embedded is not None:  # our own server: no credentials, no TLS
            s = plain_settings(s, self.nats_url)
        nc = await open_connection(s, name=f"osiris-{self.node}")
        self.bus = Bus(nc)
        streams = await ensure_streams(self.bus, self.plugins.catalogue.streams(),
                                       self.config.settings.stream_replicas)
        if streams:
            log.info("JetStream streams ready: %s", ", ".join(streams))
        self._status_sub = await nc.subscribe(RUNTIME_STATUS.name, cb=self._on_status)
        self._profile_sub = await nc.subscribe(runtime_profile(self.node), cb=self._on_profile)
        self._serve_metrics()  # before the actors start: a long model load shows as "starting"
        data_dir = self.config.data_dir
        for rec in self.plugins.active:
            for cls in rec.actors:
                try:
                    cell = ActorCell(cls, plugin=rec.name, config=self.configs[rec.name],
                                     bus=self.bus, catalogue=self.plugins.catalogue,
                                     data_dir=data_dir, node=self.node, metrics=self.metrics)
                except Exception as e:  # noqa: BLE001 - a bad actor class skips its plugin
                    rec.fail("actor", e)
                    continue
                self.cells.append(cell)
        await asyncio.gather(*(c.start() for c in self.cells))
        running = [c.name for c in self.cells if c.state is State.RUNNING]
        log.info("osiris node %s up on %s: %d actors running (%s)", self.node, self.nats_url,
                 len(running), ", ".join(running) or "none")

    def cell(self, name: str) -> ActorCell:
        for c in self.cells:
            if c.name == name:
                return c
        raise KeyError(name)

    # --- status -----------------------------------------------------------------------------
    def status(self) -> NodeStatus:
        plugins = [
            PluginStatus(name=r.name, package=r.package, version=r.version, loaded=r.loaded,
                         error=r.error, actors=[a.name for a in r.actors])
            for r in self.plugins.records.values() if r.enabled
        ]
        return NodeStatus(node=self.node, pid=os.getpid(), started=self.started,
                          plugins=plugins, actors=[c.status() for c in self.cells])

    async def _on_status(self, msg: Msg) -> None:
        if msg.reply and self.bus is not None:
            await self.bus.nc.publish(msg.reply, encode(self.status()))

    async def _on_profile(self, msg: Msg) -> None:
        """`osiris.runtime.profile.<node>`: a profile of this whole process (in a task of its
        own: a second request meanwhile gets its 409 at once)."""
        task = asyncio.get_running_loop().create_task(self._profile(msg))
        self._profiles.add(task)
        task.add_done_callback(self._profiles.discard)

    async def _profile(self, msg: Msg) -> None:
        from osiris_core.errors import ServiceError
        from osiris_core.observability.profiling import encode_result, profile_process
        from osiris_core.runtime.dispatch import bad_request, reply_budget, respond_error

        assert self.bus is not None
        nc = self.bus.nc
        try:
            try:
                args = _profile_args.decode(msg.data or b"{}")
            except (msgspec.ValidationError, msgspec.DecodeError) as e:
                raise bad_request(msg.subject, e) from None
            prof = await profile_process(args.seconds, target=f"node {self.node}")
            result = await asyncio.to_thread(encode_result, prof, args.format,
                                             reply_budget(nc.max_payload), node=self.node)
            if msg.reply:
                await nc.publish(msg.reply, encode(result))
        except ServiceError as e:
            await respond_error(nc, msg, e)
        except Exception as e:  # noqa: BLE001 - a failed profile is that request's error
            log.exception("profile of node %s failed", self.node)
            await respond_error(nc, msg, ServiceError(f"profile failed: {e!r}"))

    # --- stop -------------------------------------------------------------------------------
    async def stop(self, timeout: float | None = None) -> None:
        """Graceful and bounded: every actor drains in parallel within `timeout` (default
        `shutdown_timeout_s`, less a second for the connection), then the connection drains
        and the embedded server stops. What is still running after that is abandoned."""
        total = self.config.settings.shutdown_timeout_s if timeout is None else timeout
        loop = asyncio.get_running_loop()
        deadline = loop.time() + total
        # the connection needs time after the actors: the cut-off replies and the requests
        # still buffered (answered 503) must be flushed before it closes
        cell_budget = max(total - 2.5, total * 0.5)
        await asyncio.gather(*(c.stop(cell_budget) for c in self.cells), return_exceptions=True)
        for sub in (self._status_sub, self._profile_sub):
            if sub is not None:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
        if self.bus is not None:
            left = max(deadline - loop.time() - 0.3, 0.1)
            try:
                await asyncio.wait_for(self.bus.nc.drain(), left)
            except Exception:  # noqa: BLE001 - a slow drain must not hold the exit
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.bus.nc.close(), 0.2)
        if tracing.ON:  # the spans of the last requests, before the process exits
            left = max(deadline - loop.time() - 0.2, 0.1)
            await asyncio.to_thread(tracing.shutdown, min(left, tracing.SHUTDOWN_FLUSH_S))
        if self._keeper is not None:
            self._keeper.cancel()
        if self.embedded is not None:
            self.embedded.stop()
        if self._metrics_server is not None:  # last: a scrape during the drain still answers
            await asyncio.to_thread(self._metrics_server.stop)
            self._metrics_server = None
        self._stopped.set()
        log.info("osiris node %s stopped", self.node)

    async def run_until_signal(self, ready: Any = None) -> None:
        """Start, wait for SIGINT/SIGTERM, stop (bounded by `shutdown_timeout_s`). A signal
        during start-up cuts the start short. `ready()` is called once started."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        starting = asyncio.ensure_future(self.start())
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if stopping.done():
                exit_guard(self.config.settings.shutdown_timeout_s)
            if starting.done():
                starting.result()  # start-up errors propagate
                if ready is not None:
                    ready(self)
                await stopping
                exit_guard(self.config.settings.shutdown_timeout_s)
            else:
                log.info("signal received during start-up: stopping")
                starting.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await starting
            log.info("signal received: draining (at most %gs)",
                     self.config.settings.shutdown_timeout_s)
        finally:
            stopping.cancel()
            if not starting.done():
                starting.cancel()
            await self.stop()
