"""Fault injection, bounded and on 127.0.0.1 only: a 3-node NATS cluster with JetStream
(durable streams at R3, every write fsynced), osiris actors in several processes, and
faults injected under load — kill -9 of a NATS node, SIGSTOP of one, kill -9 of an actor
process, a restart of the embedded server under `osiris run`. Each test prints what it
injected and what was lost: nothing acknowledged may be, and every request is answered or
fails with a clear error (a client re-sends what was not acknowledged, with the same id)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import lancedb
import pytest
from osiris_testplugins.slow import SLOW_WORK

from osiris_contracts.messages import FeedbackAck
from osiris_contracts.subjects import FEEDBACK_SUBMIT, FEEDBACK_SUBMITTED
from osiris_core import Config, ServiceError
from osiris_core.nats.bus import Bus, connect
from osiris_core.testing import OsirisProcess
from osiris_core.testing.cluster import NatsCluster

pytestmark = [pytest.mark.slow, pytest.mark.chaos, pytest.mark.timeout(300)]
N = 600
IN_FLIGHT = 32


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    with NatsCluster(tmp_path / "cluster") as c:
        yield c


def stored(db_dir: Path) -> list[str]:
    """Feedback ids in the LanceDB table (read directly: the test's ground truth)."""
    try:
        tbl = lancedb.connect(str(db_dir)).open_table("feedback")
    except (ValueError, FileNotFoundError):
        return []
    return list(tbl.to_arrow().column("id").to_pylist())


def item(i: int) -> dict[str, Any]:
    return {"transaction_id": f"t{i % 50}", "feedback_type": "rating",
            "feedback_content": {"stars": i % 5}, "feedback_id": f"f{i:04d}"}


class Ingest:
    """N feedback submissions, IN_FLIGHT at a time; `fault` runs once, a third of the way."""

    def __init__(self, bus: Bus, fault: Callable[[], Any]) -> None:
        self.bus, self.fault = bus, fault
        self.acked: set[str] = set()
        self.refused: dict[str, str] = {}
        self.errors: Counter[str] = Counter()

    async def one(self, i: int, timeout: float = 5) -> None:
        fid = f"f{i:04d}"
        try:
            ack = await self.bus.request(FEEDBACK_SUBMIT, item(i), reply_type=FeedbackAck,
                                         timeout=timeout)
        except ServiceError as e:
            self.refused[fid] = f"{e.code} {e.message[:60]}"  # not acknowledged: re-sent later
            self.errors[f"{e.code} {e.message[:48]}"] += 1
            return
        assert ack.feedback_id == fid
        self.acked.add(fid)
        self.refused.pop(fid, None)

    async def run(self) -> None:
        gate = asyncio.Semaphore(IN_FLIGHT)

        async def guarded(i: int) -> None:
            async with gate:
                if i == N // 3:
                    r = self.fault()
                    if asyncio.iscoroutine(r):
                        await r
                await self.one(i)

        await asyncio.gather(*(guarded(i) for i in range(N)))

    async def resend_refused(self, within: float = 60.0) -> int:
        """What the client does with what was not acknowledged: send it again (same id)."""
        first = len(self.refused)
        deadline = time.monotonic() + within
        while self.refused and time.monotonic() < deadline:
            for fid in sorted(self.refused):
                await self.one(int(fid[1:]), timeout=10)
            if self.refused:
                await asyncio.sleep(0.5)
        assert not self.refused, self.refused
        return first


async def until_stored(db_dir: Path, want: int, within: float = 60.0) -> list[str]:
    deadline = time.monotonic() + within
    while len(stored(db_dir)) < want and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    await asyncio.sleep(1.0)  # anything stored twice would show by now
    return stored(db_dir)


def report(injected: str, ingest: Ingest, resent: int, ids: list[str]) -> None:
    lost = ingest.acked - set(ids)
    dupes = len(ids) - len(set(ids))
    print(f"\ninjected: {injected}\n  acknowledged {len(ingest.acked)} of {N}; refused during "
          f"the fault and re-sent {resent}; stored {len(set(ids))}; lost {len(lost)}; "
          f"stored twice {dupes}\n  errors the clients saw: {dict(ingest.errors.most_common(4))}")
    assert not lost, sorted(lost)[:20]
    assert dupes == 0
    assert set(ids) == ingest.acked and len(ingest.acked) == N


async def stream_leader(bus: Bus, stream: str) -> str:
    info = await bus.js.stream_info(stream)
    assert info.cluster is not None and info.cluster.leader
    assert len(info.cluster.replicas or []) == 2, info.cluster  # R3: a leader and 2 replicas
    return info.cluster.leader


def feedback_config(osiris_config: Callable[..., Config], url: str) -> Config:
    return osiris_config(plugins=["feedback"], nats=url, stream_replicas=3,
                         tables={"feedback": {"ack_wait_s": 2.0, "batch": 16}})


async def test_kill_9_of_the_stream_leaders_nats_node_loses_nothing_acknowledged(
    cluster: NatsCluster, osiris_config: Callable[..., Config]
) -> None:
    await cluster.wait_jetstream()
    cfg = feedback_config(osiris_config, cluster.url)
    assert cfg.path is not None
    with OsirisProcess(cfg.path):
        bus = Bus(await connect(cluster.url))
        leader = await stream_leader(bus, str(FEEDBACK_SUBMITTED.stream))
        victim = int(leader.removeprefix("n"))
        ingest = Ingest(bus, lambda: cluster.kill(victim))
        await ingest.run()
        resent = await ingest.resend_refused()
        ids = await until_stored(cfg.data_dir / "lancedb", N)
        new_leader = await stream_leader(bus, str(FEEDBACK_SUBMITTED.stream))
        await bus.nc.close()
    report(f"kill -9 of NATS node {leader} (leader of the feedback stream) after {N // 3} "
           f"submissions; new leader {new_leader}", ingest, resent, ids)


async def test_sigstop_of_the_stream_leaders_nats_node_loses_nothing_acknowledged(
    cluster: NatsCluster, osiris_config: Callable[..., Config]
) -> None:
    await cluster.wait_jetstream()
    cfg = feedback_config(osiris_config, cluster.url)
    assert cfg.path is not None
    with OsirisProcess(cfg.path) as proc:
        bus = Bus(await connect(cluster.url))
        leader = await stream_leader(bus, str(FEEDBACK_SUBMITTED.stream))
        victim = int(leader.removeprefix("n"))

        async def freeze_for_8s() -> None:
            cluster.freeze(victim)
            asyncio.get_running_loop().call_later(8.0, cluster.thaw, victim)

        ingest = Ingest(bus, freeze_for_8s)
        await ingest.run()
        await asyncio.sleep(8.5)  # thawed
        resent = await ingest.resend_refused()
        ids = await until_stored(cfg.data_dir / "lancedb", N)
        info = await bus.js.stream_info(str(FEEDBACK_SUBMITTED.stream))
        print(f"stream: {info.state.messages} messages; connected to {bus.nc.connected_url}")
        for c in await bus.js.consumers_info(str(FEEDBACK_SUBMITTED.stream)):
            print(f"consumer {c.name}: pending {c.num_pending}, ack pending "
                  f"{c.num_ack_pending}, redelivered {c.num_redelivered}, waiting "
                  f"{c.num_waiting}, delivered {c.delivered}, cluster {c.cluster}")
        await bus.nc.close()
        log = proc.output()
    try:
        report(f"SIGSTOP of NATS node {leader} (leader of the feedback stream) for 8 s after "
               f"{N // 3} submissions", ingest, resent, ids)
    except AssertionError:
        print(log[-6000:])
        raise


async def test_kill_9_of_an_actor_process_among_three_answers_every_request(
    cluster: NatsCluster, osiris_config: Callable[..., Config]
) -> None:
    """feedback in one process, two replicas of a service in two others; kill -9 of a
    replica with 48 requests in flight: all answered (re-sent to the survivor), and the
    durable ingest beside it loses nothing acknowledged."""
    await cluster.wait_jetstream()
    cfg = osiris_config(plugins=["feedback", "slow"], nats=cluster.url, stream_replicas=3,
                        tables={"slow": {"delay_s": 2.0}, "feedback": {"batch": 16}})
    assert cfg.path is not None
    with OsirisProcess(cfg.path, only=["feedback"]), \
            OsirisProcess(cfg.path, only=["slow"]) as a, OsirisProcess(cfg.path, only=["slow"]):
        bus = Bus(await connect(cluster.url))
        assert a.proc is not None
        victim = a.proc.pid
        calls = [asyncio.ensure_future(bus.request(SLOW_WORK, {"n": i}, timeout=60))
                 for i in range(48)]
        ingest = Ingest(bus, a.kill)
        await asyncio.sleep(0.5)  # the 48 are in flight on both replicas
        await ingest.run()
        replies = await asyncio.gather(*calls)
        resent = await ingest.resend_refused()
        ids = await until_stored(cfg.data_dir / "lancedb", N)
        await bus.nc.close()
    assert sorted(r["n"] for r in replies) == list(range(48))
    assert victim not in {r["pid"] for r in replies}  # 2 s each: it finished none
    print(f"\ninjected: kill -9 of replica pid {victim} with requests in flight: "
          f"48 of 48 answered by the survivor")
    report(f"kill -9 of actor process {victim} (a replica beside the feedback process)",
           ingest, resent, ids)


async def test_the_embedded_server_restarts_under_osiris_run_and_nothing_acked_is_lost(
    tmp_path: Path, osiris_config: Callable[..., Config]
) -> None:
    port = NatsCluster(tmp_path / "unused", size=1).nodes[0].port  # a free port
    url = f"nats://127.0.0.1:{port}"
    cfg = osiris_config(plugins=["feedback"], nats=url, embedded_nats="auto",
                        tables={"feedback": {"batch": 16}})
    assert cfg.path is not None
    with OsirisProcess(cfg.path) as proc:
        assert proc.proc is not None
        server = _child(proc.proc.pid, "nats-server")
        bus = Bus(await connect(url))
        ingest = Ingest(bus, lambda: os.kill(server, signal.SIGKILL))
        await ingest.run()
        resent = await ingest.resend_refused()
        ids = await until_stored(cfg.data_dir / "lancedb", N)
        assert "restarted the embedded nats-server" in proc.output()
        await bus.nc.close()
    report(f"kill -9 of the embedded nats-server (pid {server}) under osiris run",
           ingest, resent, ids)


def _child(pid: int, name: str) -> int:
    out = subprocess.run(["pgrep", "-P", str(pid), name], capture_output=True, text=True)
    pids = [int(p) for p in out.stdout.split()]
    assert pids, f"no {name} child of {pid}"
    return pids[0]
