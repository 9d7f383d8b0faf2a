"""Gateway overhead (DESIGN §12): the same non-model request over HTTP→gateway→NATS→actor
vs a direct NATS request, side by side, plus an HTTP load run with wrk.

    .venv/bin/python bench/gateway.py            # about a minute on 2 cores
    .venv/bin/python bench/gateway.py --quick    # smoke run

The request: an actor's status (`GET /actors/example` ↔ `osiris.example.control
{"op": "status"}`), answered by the example actor in its own `osiris run` process. A private
nats-server (free port) carries it. Two gateways are measured, each in its own process:
  actor     the `gateway` plugin inside `osiris run` (uvicorn + httptools on the runtime loop)
  granian   the standalone `python -m osiris_gateway` (granian + uvloop, 1 worker)
Sequential latency is measured from this process with a keep-alive stdlib HTTP client and
with nats-py (uvloop); rounds alternate the order. `GET /v1/models` (no bus) shows the cost of
HTTP alone. Load: `wrk -t2 -c64` against each gateway, and 64 NATS requests in flight.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec
import nats

from osiris_core.nats.server import EmbeddedNats
from osiris_core.testing import OsirisProcess, write_config

TARGET_P50_MS, TARGET_P99_MS = 1.0, 5.0
STATUS = b'{"op":"status"}'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(port: int, path: str = "/health", timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", path)
            if c.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"gateway on :{port} not up")


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


def http_latency(port: int, path: str, n: int) -> list[float]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        c.request("GET", path)
        r = c.getresponse()
        r.read()
        out.append(time.perf_counter() - t0)
        assert r.status == 200, r.status
    c.close()
    return out


async def nats_latency(url: str, n: int) -> list[float]:
    nc = await nats.connect(url)
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        await nc.request("osiris.example.control", STATUS, timeout=5)
        out.append(time.perf_counter() - t0)
    await nc.close()
    return out


async def nats_throughput(url: str, total: int, inflight: int) -> float:
    nc = await nats.connect(url)
    sem = asyncio.Semaphore(inflight)

    async def one() -> None:
        async with sem:
            await nc.request("osiris.example.control", STATUS, timeout=10)

    t0 = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(total)))
    rps = total / (time.perf_counter() - t0)
    await nc.close()
    return rps


def wrk(port: int, path: str, seconds: int) -> dict[str, float]:
    exe = shutil.which("wrk")
    if exe is None:
        return {}
    out = subprocess.run([exe, "-t2", "-c64", f"-d{seconds}s", "--latency",
                          f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True,
                         check=True).stdout
    res: dict[str, float] = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}  # type: ignore[union-attr]
    for p in ("50", "99"):
        m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out)
        if m:
            res[f"p{p}"] = float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]
    errs = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    res["non2xx"] = float(errs.group(1)) if errs else 0.0
    return res


def busy() -> tuple[float, float]:
    with open("/proc/stat") as f:
        v = [float(x) for x in f.readline().split()[1:]]
    return sum(v) - v[3] - v[4], v[7] if len(v) > 7 else 0.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("-n", type=int, default=3000)
    ap.add_argument("--wrk-seconds", type=int, default=5)
    a = ap.parse_args()
    n, rounds, wsec = (300, 1, 2) if a.quick else (a.n, a.rounds, a.wrk_seconds)
    os.environ.setdefault("OSIRIS_LOG_LEVEL", "WARNING")
    with tempfile.TemporaryDirectory(prefix="osiris-bench-gw-") as d, \
            EmbeddedNats(Path(d) / "nats") as srv:
        port_actor, port_granian = free_port(), free_port()
        cfg = write_config(Path(d) / "osiris.toml", srv.url, ["example", "gateway"],
                           {"gateway": {"port": port_actor, "rate_limit_per_s": 0.0}})
        gcfg = write_config(Path(d) / "gw.toml", srv.url, ["example"],
                            {"gateway": {"port": port_granian, "rate_limit_per_s": 0.0}})
        env = {"OSIRIS_LOG_LEVEL": "WARNING"}
        with OsirisProcess(cfg, env=env) as proc:
            gw = subprocess.Popen([sys.executable, "-m", "osiris_gateway", "-c", str(gcfg)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  env={**os.environ, **env})
            try:
                wait_http(port_actor)
                wait_http(port_granian)
                run(srv.url, {"actor": port_actor, "granian": port_granian}, n, rounds, wsec,
                    proc)
            finally:
                gw.terminate()
                gw.wait(30)


def run(url: str, ports: dict[str, int], n: int, rounds: int, wsec: int, proc: Any) -> None:
    lat: dict[str, list[float]] = {}
    b0 = busy()
    t0 = time.monotonic()
    for r in range(rounds):
        order = ["nats", *ports, "models-actor"]
        if r % 2:
            order.reverse()
        for kind in order:
            warm = max(n // 10, 50)
            if kind == "nats":
                asyncio.run(nats_latency(url, warm))
                lat.setdefault(kind, []).extend(asyncio.run(nats_latency(url, n)))
            elif kind == "models-actor":
                http_latency(ports["actor"], "/v1/models", warm)
                lat.setdefault(kind, []).extend(http_latency(ports["actor"], "/v1/models", n))
            else:
                http_latency(ports[kind], "/actors/example", warm)
                lat.setdefault(kind, []).extend(http_latency(ports[kind], "/actors/example", n))
    nats_rps = asyncio.run(nats_throughput(url, max(n * 3, 3000), 64))
    loads = {k: wrk(p, "/actors/example", wsec) for k, p in ports.items()}
    b1 = busy()
    wall = max(time.monotonic() - t0, 1e-9)
    ticks = os.sysconf("SC_CLK_TCK") * wall * (os.cpu_count() or 1)
    print(f"python {platform.python_version()}, {os.cpu_count()} cpus, "
          f"{rounds} rounds x {n} sequential requests per path; wrk -t2 -c64 -d{wsec}s")
    print(f"  machine during measurement: {100 * (b1[0] - b0[0]) / ticks:.0f}% busy, "
          f"{100 * (b1[1] - b0[1]) / ticks:.0f}% steal")
    base50, base99 = pct(lat["nats"], 50) * 1e3, pct(lat["nats"], 99) * 1e3
    labels = {"nats": "direct NATS request", "actor": "HTTP→gateway (osiris run)→NATS",
              "granian": "HTTP→gateway (granian)→NATS", "models-actor": "HTTP only (/v1/models)"}
    print()
    print(f"{'path':<34} {'p50 ms':>8} {'p99 ms':>8} {'+p50 ms':>8} {'+p99 ms':>8} "
          f"{'p50 ×':>6} {'req/s @64':>10} {'req/s ×':>8}")
    print("-" * 98)
    for kind in ("nats", "actor", "granian", "models-actor"):
        p50, p99 = pct(lat[kind], 50) * 1e3, pct(lat[kind], 99) * 1e3
        if kind == "nats":
            rps = nats_rps
        else:
            rps = loads.get(kind, {}).get("rps", float("nan")) if kind in loads else float("nan")
        print(f"{labels[kind]:<34} {p50:8.3f} {p99:8.3f} {p50 - base50:+8.3f} {p99 - base99:+8.3f} "
              f"{p50 / base50:6.2f} {rps:10,.0f} {rps / nats_rps:8.2f}")
    print()
    for kind, res in loads.items():
        if res:
            print(f"wrk {labels[kind]}: {res['rps']:,.0f} req/s, p50 {res.get('p50', 0):.2f} ms, "
                  f"p99 {res.get('p99', 0):.2f} ms, non-2xx {res['non2xx']:.0f}")
    print()
    for kind in ("actor", "granian"):
        d50 = (pct(lat[kind], 50) - pct(lat["nats"], 50)) * 1e3
        d99 = (pct(lat[kind], 99) - pct(lat["nats"], 99)) * 1e3
        print(f"DESIGN §12 gateway overhead, {labels[kind]}: +{d50:.3f} ms p50 "
              f"(target <= +{TARGET_P50_MS:g}) {'PASS' if d50 <= TARGET_P50_MS else 'FAIL'}; "
              f"+{d99:.3f} ms p99 (target <= +{TARGET_P99_MS:g}) "
              f"{'PASS' if d99 <= TARGET_P99_MS else 'FAIL'}")
    _ = statistics, msgspec, proc


if __name__ == "__main__":
    main()
