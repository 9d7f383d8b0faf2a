"""Actor round-trip benchmark (DESIGN §12): raw nats-py vs raw + msgspec vs an osiris actor.

Run it from the repository root:

    .venv/bin/python bench/actor_roundtrip.py            # full run, about a minute on 2 cores
    .venv/bin/python bench/actor_roundtrip.py --quick    # smoke run, a few seconds
    .venv/bin/python bench/actor_roundtrip.py --profile  # + cProfile of each responder
                                                         #   (distorts the timings; diagnosis only)
    .venv/bin/python bench/actor_roundtrip.py --tracing  # + the actor with tracing on
    .venv/bin/python bench/actor_roundtrip.py --compare REV  # + the actor of git revision REV
                                                         #   (before/after, alternating)

A private nats-server (`EmbeddedNats`, free port, temp dir; never 4222) carries everything.
Each responder runs in its own subprocess (this file, `--serve KIND ...`):
  raw      nc.subscribe(queue=...) + `msg.respond(msg.data)`
  msgspec  the same, decoding into a msgspec Struct and re-encoding it (what an actor does)
  osiris   an Actor with an `@service` echo handler, run by `osiris_core.runtime.node.Runtime`
  traced   (--tracing) the same actor with OTEL_EXPORTER_OTLP_ENDPOINT set: a span per
           request, exported over OTLP/HTTP to a real receiver in the client process; the
           client sends a `traceparent` with each request, as a traced caller does
  before   (--compare REV) the osiris actor of git revision REV (a temporary worktree, its
           own bench file and core), on a second nats-server of its own since it serves
           the same subject: the same work before and after a change, in one run
The client (this process) measures, per responder and round: sequential latency (p50/p99),
throughput with `--inflight` requests outstanding, and the responder's CPU (utime + stime
from /proc/<pid>/stat) per request during the throughput phase. Rounds rotate the order of
the responders so that background load does not favour one of them. Every process uses
uvloop unless `--no-uvloop`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import os
import platform
import pstats
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import nats
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from osiris_core import Actor, PluginConfig, hookimpl, service
from osiris_core.config import load_config
from osiris_core.nats.server import EmbeddedNats, find_nats_server
from osiris_core.testing.otlp import OtlpReceiver

ROOT = Path(__file__).resolve().parent.parent
KINDS = ("raw", "msgspec", "osiris")
LABELS = {"raw": "raw nats-py", "msgspec": "raw+msgspec", "osiris": "osiris actor",
          "traced": "osiris+OTLP", "before": "osiris before"}
TRACEPARENT = {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
T = TypeVar("T")
TARGETS = {"p50": 1.05, "cpu": 1.3, "rps": 0.95}  # DESIGN §12 (raised): ≤, ≤, ≥ (ratios vs raw)


class Payload(msgspec.Struct):
    text: str
    n: int
    tags: list[str]


PAYLOAD = msgspec.json.encode(Payload(text="hello osiris " * 4, n=42, tags=["a", "b", "c"]))


# --- responders (run with --serve) ---------------------------------------------------------
class BenchEcho(Actor[PluginConfig]):
    name = "benchecho"

    @service("bench.osiris")
    async def echo(self, req: Payload) -> Payload:
        return req


class BenchTraced(Actor[PluginConfig]):
    name = "benchtraced"

    @service("bench.traced")
    async def echo(self, req: Payload) -> Payload:
        return req


@hookimpl
def register_actors(register: Callable[[type[Actor[Any]]], None]) -> None:
    register(BenchTraced if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") else BenchEcho)


def raw_callback(kind: str) -> Callable[[Msg], Awaitable[None]]:
    if kind == "raw":

        async def echo(msg: Msg) -> None:
            await msg.respond(msg.data)

        return echo
    dec, enc = msgspec.json.Decoder(Payload), msgspec.json.Encoder()

    async def echo_typed(msg: Msg) -> None:
        await msg.respond(enc.encode(dec.decode(msg.data)))

    return echo_typed


async def serve(kind: str, url: str, config_path: str, profile: bool) -> cProfile.Profile | None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    close: Callable[[], Awaitable[None]]
    if kind in ("osiris", "traced"):
        from osiris_core.runtime.node import Runtime  # the raw responders never load it

        rt = Runtime(load_config(config_path), extra_plugins={"benchecho": sys.modules[__name__]})
        await rt.start()
        if not rt.cells or rt.cells[0].state.value != "running":
            raise SystemExit(f"benchecho actor did not start: {rt.status()}")
        close = rt.stop
    else:
        nc = await nats.connect(url, name=f"bench-{kind}")
        await nc.subscribe(f"bench.{kind}", queue=kind, cb=raw_callback(kind))
        await nc.flush()
        close = nc.drain
    prof = cProfile.Profile() if profile else None
    print("ready", flush=True)
    if prof is not None:
        prof.enable()
    await stop.wait()
    if prof is not None:
        prof.disable()
    await close()
    return prof


# --- client ---------------------------------------------------------------------------------
@dataclass
class Stats:
    lat_ns: list[int] = field(default_factory=list)
    rps: list[float] = field(default_factory=list)
    cpu_s: float = 0.0
    reqs: int = 0

    def pct(self, q: float) -> float:
        s = sorted(self.lat_ns)
        return s[min(len(s) - 1, int(q * len(s)))] / 1000

    @property
    def cpu_us(self) -> float:
        return self.cpu_s / self.reqs * 1e6

    @property
    def rps_median(self) -> float:
        return sorted(self.rps)[len(self.rps) // 2]


def cpu_seconds(pid: int) -> float:
    """utime + stime of a whole process (all threads), from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_jiffies() -> list[int]:
    """Machine-wide /proc/stat counters: user nice system idle iowait irq softirq steal."""
    return [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]


async def burst(nc: NATS, subject: str, total: int, inflight: int,
                headers: dict[str, str] | None = None) -> None:
    left = total

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await nc.request(subject, PAYLOAD, timeout=10, headers=headers)

    await asyncio.gather(*(worker() for _ in range(inflight)))


async def measure(nc: NATS, kind: str, pid: int, a: argparse.Namespace, st: Stats) -> None:
    subject = f"bench.{kind}"
    hdrs = TRACEPARENT if kind == "traced" else None
    reply = await nc.request(subject, PAYLOAD, timeout=5, headers=hdrs)
    if reply.data != PAYLOAD or reply.headers:
        raise SystemExit(f"{kind}: unexpected reply {reply.headers} {reply.data!r}")
    for _ in range(a.warmup):
        await nc.request(subject, PAYLOAD, timeout=5, headers=hdrs)
    await burst(nc, subject, a.warmup * 4, a.inflight, hdrs)
    for _ in range(a.seq):
        t0 = time.perf_counter_ns()
        await nc.request(subject, PAYLOAD, timeout=5, headers=hdrs)
        st.lat_ns.append(time.perf_counter_ns() - t0)
    cpu0, start = cpu_seconds(pid), time.perf_counter()
    await burst(nc, subject, a.burst, a.inflight, hdrs)
    elapsed, cpu1 = time.perf_counter() - start, cpu_seconds(pid)
    st.rps.append(a.burst / elapsed)
    st.cpu_s += cpu1 - cpu0
    st.reqs += a.burst


def spawn(kind: str, url: str, config: Path, a: argparse.Namespace, work: Path,
          otlp: str = "", tree: Path | None = None) -> subprocess.Popen[str]:
    """A responder process; `tree`: the checkout of another revision to run it from."""
    prof = str(work / f"profile-{kind}.txt") if a.profile else ""
    script = str(tree / "bench" / Path(__file__).name) if tree else __file__
    args = [sys.executable, script, "--serve", "osiris" if tree else kind, url, str(config),
            prof]
    if a.no_uvloop:
        args.append("--no-uvloop")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    if tree is not None:  # its own osiris_core first on the path
        env["PYTHONPATH"] = os.pathsep.join([str(tree), *filter(None, [env.get("PYTHONPATH")])])
    if kind == "traced":
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = otlp
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
                            env=env)
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        raise SystemExit(f"{kind} responder failed to start (exit {proc.wait(10)})")
    return proc


@contextlib.contextmanager
def checkout(rev: str) -> Iterator[Path]:
    """A detached worktree of `rev`, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="osiris-bench-rev-") as d:
        where = Path(d) / "tree"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(where), rev],
                       check=True, capture_output=True)
        try:
            yield where
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(where)],
                           capture_output=True)


def report(stats: dict[str, Stats]) -> list[str]:
    raw = stats["raw"]
    head = (
        f"{'responder':<14}{'p50 µs':>9}{'p99 µs':>9}{'req/s @in':>11}{'CPU µs/req':>12}"
        f"{'p50 ×raw':>10}{'req/s ×raw':>12}{'CPU ×raw':>10}"
    )
    lines = [head, "-" * len(head)]
    for kind, st in stats.items():
        lines.append(
            f"{LABELS[kind]:<14}{st.pct(0.5):>9.0f}{st.pct(0.99):>9.0f}"
            f"{st.rps_median:>11,.0f}{st.cpu_us:>12.1f}{st.pct(0.5) / raw.pct(0.5):>10.2f}"
            f"{st.rps_median / raw.rps_median:>12.2f}{st.cpu_us / raw.cpu_us:>10.2f}"
        )
    o = stats["osiris"]
    if "before" in stats:
        b = stats["before"]
        lines += ["", f"this revision vs --compare: p50 {o.pct(0.5) / b.pct(0.5):.2f}x, CPU/req "
                      f"{o.cpu_us / b.cpu_us:.2f}x, throughput {o.rps_median / b.rps_median:.2f}x"]
    if "traced" in stats:
        t = stats["traced"]
        lines += ["", f"tracing on (a span per request, exported): p50 {t.pct(0.5) - o.pct(0.5):+.0f} µs "
                      f"({t.pct(0.5) / o.pct(0.5):.2f}x the untraced actor), CPU "
                      f"{t.cpu_us - o.cpu_us:+.1f} µs/req ({t.cpu_us / o.cpu_us:.2f}x), "
                      f"throughput {t.rps_median / o.rps_median:.2f}x"]
    checks = [
        ("p50 latency", o.pct(0.5) / raw.pct(0.5), "<=", TARGETS["p50"]),
        ("responder CPU/req", o.cpu_us / raw.cpu_us, "<=", TARGETS["cpu"]),
        ("throughput", o.rps_median / raw.rps_median, ">=", TARGETS["rps"]),
    ]
    lines += ["", "DESIGN §12 targets for the osiris actor (ratio vs raw nats-py):"]
    for name, ratio, op, target in checks:
        ok = ratio <= target if op == "<=" else ratio >= target
        lines.append(f"  {name:<18} {ratio:5.2f}x  target {op} {target:.2f}x  {'PASS' if ok else 'MISS'}")
    return lines


async def client(a: argparse.Namespace, version: str, tree: Path | None = None) -> None:
    loop_name = "asyncio" if a.no_uvloop else "uvloop"
    print(
        f"python {platform.python_version()}, {os.cpu_count()} cpus, {version}, "
        f"event loop: {loop_name} (client and all responders)"
    )
    print(
        f"sizes: {a.rounds} rounds x (warmup {a.warmup}, sequential {a.seq}, {a.burst} @ {a.inflight} in flight)"
    )
    with tempfile.TemporaryDirectory(prefix="osiris-bench-") as d:
        work = Path(d)
        kinds = KINDS + (("traced",) if a.tracing else ()) + (("before",) if a.compare else ())
        with EmbeddedNats(work / "nats") as srv, EmbeddedNats(work / "nats-before") as srv2, \
                OtlpReceiver() as rx:
            from osiris_core.testing import write_config

            config = write_config(work / "osiris.toml", srv.url, [], embedded_nats="never", log_level="WARNING")
            config2 = write_config(work / "before.toml", srv2.url, [], embedded_nats="never",
                                   log_level="WARNING")
            procs: dict[str, subprocess.Popen[str]] = {}
            try:
                for kind in kinds:
                    if kind == "before":
                        procs[kind] = spawn(kind, srv2.url, config2, a, work, tree=tree)
                    else:
                        procs[kind] = spawn(kind, srv.url, config, a, work, rx.url)
                nc = await nats.connect(srv.url, name="bench-client")
                nc2 = await nats.connect(srv2.url, name="bench-client-before")
                stats = {k: Stats() for k in kinds}
                j0 = cpu_jiffies()
                for r in range(a.rounds):
                    n = r % len(kinds)
                    order = kinds[n:] + kinds[:n]
                    for kind in order:
                        conn, subject = (nc2, "osiris") if kind == "before" else (nc, kind)
                        await measure(conn, subject, procs[kind].pid, a, stats[kind])
                    print(f"  round {r + 1}/{a.rounds} done", flush=True)
                await nc.close()
                await nc2.close()
                if a.tracing:
                    sent = a.rounds * (a.warmup * 5 + a.seq + a.burst) + 1
                    print(f"  OTLP receiver: {len(rx.spans):,} spans in {rx.requests:,} exports, "
                          f"for {sent:,} traced requests (the SDK drops spans when more than "
                          "2,048 wait for export)")
                dj = [y - x for x, y in zip(j0, cpu_jiffies(), strict=True)]
                print(
                    f"  machine during measurement: {100 * (sum(dj) - dj[3]) / sum(dj):.0f}% busy,"
                    f" {100 * dj[7] / sum(dj):.0f}% steal (all processes, both cores)"
                )
            finally:
                for p in procs.values():
                    p.send_signal(signal.SIGTERM)
                for p in procs.values():
                    try:
                        p.wait(30)
                    except subprocess.TimeoutExpired:
                        p.kill()
        print("\n" + "\n".join(report(stats)))
        if a.quick:
            print("(--quick is a smoke test: too few requests and 10 ms CPU ticks; ratios are noise)")
        for kind in kinds if a.profile else ():
            print(f"\n--- cProfile of the {LABELS[kind]} responder (tottime) ---")
            print((work / f"profile-{kind}.txt").read_text())


def run(coro: Coroutine[Any, Any, T], no_uvloop: bool) -> T:
    if no_uvloop:
        return asyncio.run(coro)
    import uvloop

    return uvloop.run(coro)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":  # responder: --serve KIND URL CONFIG PROF
        kind, url, config, prof_path = sys.argv[2:6]
        prof = run(serve(kind, url, config, bool(prof_path)), "--no-uvloop" in sys.argv)
        if prof is not None:
            out = io.StringIO()
            pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(25)
            Path(prof_path).write_text(out.getvalue().strip() + "\n")
        return
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke run (checks it works; ratios are noise)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seq", type=int, default=5000, help="sequential requests per round")
    p.add_argument("--burst", type=int, default=30000, help="throughput requests per round")
    p.add_argument("--inflight", type=int, default=64)
    p.add_argument("--warmup", type=int, default=500)
    p.add_argument("--no-uvloop", action="store_true", help="plain asyncio everywhere")
    p.add_argument("--profile", action="store_true", help="cProfile each responder")
    p.add_argument("--compare", metavar="REV", default="",
                   help="also the osiris actor of git revision REV (before/after in one run)")
    p.add_argument("--tracing", action="store_true",
                   help="also the actor with tracing on (OTLP/HTTP to a receiver here)")
    a = p.parse_args()
    if a.quick:
        a.rounds, a.seq, a.burst, a.warmup = 1, 300, 1000, 50
    cmd = [find_nats_server(), "--version"]
    version = subprocess.run(cmd, capture_output=True, text=True).stdout.strip()
    if not a.compare:
        run(client(a, version), a.no_uvloop)
        return
    with checkout(a.compare) as tree:
        run(client(a, version, tree), a.no_uvloop)


if __name__ == "__main__":
    main()
