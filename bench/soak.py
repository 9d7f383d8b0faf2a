"""Soak: N minutes (bounded) of mixed traffic through the gateway on the tiny models, with the
memory of every process sampled — the report says whether any of them grows without bound.

Run it from the repository root:

    .venv/bin/python bench/soak.py               # 3 minutes of traffic (+ ~1 min start-up)
    .venv/bin/python bench/soak.py --quick       # 30 s of traffic: a smoke run
    .venv/bin/python bench/soak.py --minutes 20  # longer: the slope gets more samples

A private nats-server (`EmbeddedNats`, free port, JetStream; never 4222) and five `osiris run
--only <plugin>` processes, one plugin each, so memory growth can be attributed: gateway
(uvicorn in `osiris run`, rate limit off), hermes (tiny Llama, torch CPU), phi3 (tiny Phi-3
GenAI folder, CPU; a copy whose session options ask for one intra-op thread), orchestrator
(`assess_max_length` 32), feedback (LanceDB under the run's data_dir). Every process runs
with OMP_NUM_THREADS=1 (`--threads`): two torch processes with 2 threads each thrash 2 cores
(bench/failover.py).

Traffic, over HTTP with httpx from this process (uvloop when installed):
  workers   `--concurrency` loops, each sends one request at a time, the route drawn from a
            fixed mix (seeded): POST /generate/ (hermes, max_length 32), POST /generate/hermes/
            with `"stream": true` (token SSE read to `event: done`), POST /generate/phi3/,
            POST /propose_trade_adjustments/, POST /feedback/phi3/ (a correction or rating of
            a recent proposal's transaction_id), GET /health.
  listeners `--listeners` long-lived `GET /events` SSE streams (phi3.>; created+feedback;
            assessed; an idle one on osiris.runs.completed,advice.generated that only sees
            pings). Events received are compared with what the successful requests published;
            each must still be connected at the end.

Phases: warm-up (one request per route, then `--warmup` s of the same traffic, not counted),
then `--minutes` of measured traffic. Every `--sample-s` the VmRSS, thread count and open fds
of each process (/proc/<pid>/status, /proc/<pid>/fd) are read. Growth is judged on the slope
of a least-squares line through the second half's RSS samples (warm-up caches fill in the
first half): bounded when it is below max(5 MiB/min, 1% of the process's RSS per minute).
That is a trend over a short run, not a proof: a leak of a few KiB per request would need a
longer `--minutes` to clear the noise. Throughput of the first and last window (60 s; a third
of the run under `--quick`) gives the degradation ratio. At the end the gateway's /metrics must
show exactly the listeners' NATS subscriptions (no generation stream left subscribed), and
none once the listeners have gone; /health gives each actor's handled/errors/restarts, and the
feedback actor's status the LanceDB rows it wrote (its RSS growth per row is printed).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import random
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import httpx  # noqa: E402 - after the offline switch

from osiris_core.nats.server import EmbeddedNats, find_nats_server, free_port  # noqa: E402
from osiris_core.testing import OsirisProcess, write_config  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PLUGINS = ["gateway", "hermes", "phi3", "orchestrator", "feedback"]
SLOPE_ABS_MIB_MIN = 5.0  # bounded: second-half slope below this …
SLOPE_REL_MIN = 0.01  # … or below this fraction of the process's RSS, per minute
SSE_PING_S = 5.0

# route → weight in the mix
MIX = {"generate hermes": 3, "generate hermes stream": 2, "generate phi3": 1, "propose": 2,
       "feedback": 3, "health": 1}
LISTENERS = ["phi3.>", "phi3.proposal.created,phi3.feedback.submitted", "phi3.proposal.assessed",
             "osiris.runs.completed,advice.generated"]
"""The gateway holds one NATS subscription per pattern. The last listener's subjects see no
traffic here: it only gets pings."""
TOPICS = ["XYZ gapped up on volume", "ABC sold off after earnings", "QQQ drifts in a tight range",
          "MSFT broke out above resistance", "OIL spiked on supply news", "EURUSD fell hard"]


# --- processes ------------------------------------------------------------------------------
class Procs:
    """The `osiris run --only <plugin>` processes, one plugin each."""

    def __init__(self, config: Path, logs: Path, env: dict[str, str]) -> None:
        self.config, self.logs, self.env = config, logs, env
        self.procs: dict[str, OsirisProcess] = {}

    def start(self, timeout: float = 240.0) -> None:
        for name in PLUGINS:
            p = OsirisProcess(self.config, only=[name], env=self.env,
                              log_path=self.logs / f"{name}.log")
            self.procs[name] = p.start(wait_ready=False)
        deadline = time.monotonic() + timeout
        for name, p in self.procs.items():
            assert p.proc is not None
            while "osiris: ready" not in p.output():
                if p.proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"{name} not ready (exit {p.proc.poll()}):\n"
                                     f"{p.output()[-2000:]}")
                time.sleep(0.05)

    def pids(self) -> dict[str, int]:
        return {n: p.proc.pid for n, p in self.procs.items() if p.proc is not None}

    def dead(self) -> dict[str, int]:
        return {n: p.proc.returncode for n, p in self.procs.items()
                if p.proc is not None and p.proc.poll() is not None}

    def stop(self) -> None:
        for p in self.procs.values():
            if p.proc is not None and p.proc.poll() is None:
                p.proc.terminate()
        for p in self.procs.values():
            if p.proc is None:
                continue
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        self.procs.clear()


def proc_sample(pid: int) -> tuple[int, int, int] | None:
    """(VmRSS KiB, threads, open fds) of a live process, None when it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None
    rss = int(re.search(r"^VmRSS:\s+(\d+)", status, re.M).group(1))  # type: ignore[union-attr]
    threads = int(re.search(r"^Threads:\s+(\d+)", status, re.M).group(1))  # type: ignore[union-attr]
    return rss, threads, fds


def cpu_jiffies() -> list[int]:
    """Machine-wide /proc/stat counters: user nice system idle iowait irq softirq steal."""
    return [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]


# --- traffic --------------------------------------------------------------------------------
@dataclass
class Result:
    t: float  # completion, s since the measured start (negative: warm-up)
    route: str
    status: str  # "200", "503", "exc:ReadTimeout", "sse-error", "bad-body" …
    lat: float


@dataclass
class Listener:
    subjects: str
    events: Counter[str] = field(default_factory=Counter)
    pings: int = 0
    subscribed: asyncio.Event = field(default_factory=asyncio.Event)
    last: float = 0.0
    ended: str = ""  # why the stream ended, if it did


class Traffic:
    def __init__(self, a: argparse.Namespace, base: str) -> None:
        self.a = a
        self.base = base
        self.results: list[Result] = []
        self.t0 = math.inf  # monotonic start of the measured run
        self.stop_at = math.inf
        self.tids: deque[str] = deque(maxlen=64)
        self.published = Counter[str]()  # events the successful requests published
        self.rng = random.Random(a.seed)
        self.seq = 0
        routes, weights = zip(*MIX.items(), strict=True)
        self.routes, self.weights = list(routes), list(weights)

    def prompt(self) -> str:
        self.seq += 1
        return f"{self.rng.choice(TOPICS)} (request {self.seq}): what now?"

    async def one(self, client: httpx.AsyncClient, route: str) -> Result:
        t0 = time.monotonic()
        status = ""
        try:
            status = await getattr(self, "r_" + route.replace(" ", "_"))(client)
        except httpx.HTTPError as e:
            status = f"exc:{type(e).__name__}"
        t1 = time.monotonic()
        r = Result(t1 - self.t0, route, status, t1 - t0)
        self.results.append(r)
        return r

    async def r_generate_hermes(self, c: httpx.AsyncClient) -> str:
        r = await c.post("/generate/", json={"prompt": self.prompt(), "max_length": 32})
        return _status(r, "generated_text")

    async def r_generate_hermes_stream(self, c: httpx.AsyncClient) -> str:
        body = {"prompt": self.prompt(), "max_length": 32, "stream": True}
        async with c.stream("POST", "/generate/hermes/", json=body) as r:
            if r.status_code != 200:
                await r.aread()
                FIRST_ERROR.setdefault(str(r.status_code), f"/generate/hermes/: {_line(r.text)}")
                return str(r.status_code)
            event, chunks = "", 0
            async for line in r.aiter_lines():
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    if event == "done":
                        return "200" if "generated_text" in line else "bad-body"
                    if event == "error":
                        return "sse-error"
                    chunks += 1
            return "sse-no-done"

    async def r_generate_phi3(self, c: httpx.AsyncClient) -> str:
        r = await c.post("/generate/phi3/", json={"prompt": self.prompt(), "max_length": 256})
        return _status(r, "ticker")

    async def r_propose(self, c: httpx.AsyncClient) -> str:
        r = await c.post("/propose_trade_adjustments/", json={"prompt": self.prompt()})
        s = _status(r, "transaction_id")
        if s == "200":
            body = r.json()
            self.tids.append(body["transaction_id"])
            self.proposal = body["phi3_proposal"]
            self.published.update(["phi3.proposal.created", "phi3.proposal.assessed"])
        return s

    async def r_feedback(self, c: httpx.AsyncClient) -> str:
        tid = self.rng.choice(self.tids) if self.tids else str(uuid.uuid4())
        if self.rng.random() < 0.5 and getattr(self, "proposal", None):
            body: dict[str, Any] = {
                "transaction_id": tid, "feedback_type": "correction",
                "feedback_content": "tighter stop",
                "corrected_proposal": {**self.proposal, "new_stop_pct": 1.0,
                                       "rationale": "Keep the stop tight in a soak."}}
        else:
            body = {"transaction_id": tid, "feedback_type": "rating",
                    "feedback_content": self.rng.randint(1, 5)}
        r = await c.post("/feedback/phi3/", json=body)
        s = _status(r, "transaction_id")
        if s == "200":
            self.published["phi3.feedback.submitted"] += 1
        return s

    async def r_health(self, c: httpx.AsyncClient) -> str:
        return _status(await c.get("/health"), "actors")

    async def worker(self, client: httpx.AsyncClient) -> None:
        while time.monotonic() < self.stop_at:
            route = self.rng.choices(self.routes, self.weights)[0]
            await self.one(client, route)

    async def listen(self, client: httpx.AsyncClient, ls: Listener) -> None:
        timeout = httpx.Timeout(10.0, read=3 * SSE_PING_S)
        try:
            async with client.stream("GET", "/events", params={"subjects": ls.subjects},
                                     timeout=timeout) as r:
                if r.status_code != 200:
                    ls.ended = f"HTTP {r.status_code}"
                    return
                event = ""
                async for line in r.aiter_lines():
                    ls.last = time.monotonic()
                    if line.startswith(":"):
                        if "subscribed" in line:
                            ls.subscribed.set()
                        else:
                            ls.pings += 1
                    elif line.startswith("event:"):
                        event = line[6:].strip()
                    elif not line and event:
                        ls.events[event] += 1
                        event = ""
                ls.ended = "closed by the server"
        except httpx.HTTPError as e:
            ls.ended = f"{type(e).__name__}: {e}"


FIRST_ERROR: dict[str, str] = {}
"""The body of the first answer with each non-200 status (the report shows why it failed)."""


def _line(text: str) -> str:
    return " ".join(text.split())[:300]


def _status(r: httpx.Response, key: str) -> str:
    if r.status_code != 200:
        FIRST_ERROR.setdefault(str(r.status_code), f"{r.request.url.path}: {_line(r.text)}")
        return str(r.status_code)
    try:
        return "200" if key in r.json() else "bad-body"
    except ValueError:
        return "bad-body"


# --- report helpers -------------------------------------------------------------------------
def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[max(0, math.ceil(q * len(s)) - 1)] if s else math.nan


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (t, y)."""
    if len(points) < 3:
        return math.nan
    n = len(points)
    mt = sum(t for t, _ in points) / n
    my = sum(y for _, y in points) / n
    den = sum((t - mt) ** 2 for t, _ in points)
    return sum((t - mt) * (y - my) for t, y in points) / den if den else math.nan


def fmt(x: float, spec: str = ".1f") -> str:
    return "—" if math.isnan(x) else format(x, spec)


async def metrics_value(client: httpx.AsyncClient, name: str) -> float:
    text = (await client.get("/metrics")).text
    total, seen = 0.0, False
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
            seen = True
    return total if seen else math.nan


async def feedback_written(client: httpx.AsyncClient) -> int:
    """Rows the feedback actor has written to LanceDB, all tables (its status facts)."""
    try:
        body = (await client.get("/actors/feedback")).json()
    except (httpx.HTTPError, ValueError):
        return -1

    def find(x: Any) -> Any:
        if isinstance(x, dict):
            if isinstance(x.get("written"), dict):
                return x["written"]
            for v in x.values():
                if (got := find(v)) is not None:
                    return got
        elif isinstance(x, list):
            for v in x:
                if (got := find(v)) is not None:
                    return got
        return None

    written = find(body)
    return sum(written.values()) if written else -1


# --- the run --------------------------------------------------------------------------------
async def drive(a: argparse.Namespace, port: int, pids: dict[str, int],
                procs: Procs) -> list[str]:
    base = f"http://127.0.0.1:{port}"
    tr = Traffic(a, base)
    duration = a.minutes * 60.0
    samples: list[tuple[float, dict[str, tuple[int, int, int] | None]]] = []
    limits = httpx.Limits(max_connections=a.concurrency + 4, max_keepalive_connections=a.concurrency)
    timeout = httpx.Timeout(a.timeout)
    async with httpx.AsyncClient(base_url=base, timeout=timeout, limits=limits) as client, \
            httpx.AsyncClient(base_url=base, timeout=timeout) as sse_client:
        listeners = [Listener(s) for s in LISTENERS[:a.listeners]]
        ltasks = [asyncio.ensure_future(tr.listen(sse_client, ls)) for ls in listeners]
        for ls in listeners:
            try:
                await asyncio.wait_for(ls.subscribed.wait(), 30)
            except TimeoutError:
                raise SystemExit(f"/events listener {ls.subjects} not subscribed: {ls.ended}") from None
        # warm-up: every route once, then `--warmup` s of the mix (not counted)
        tw = time.monotonic()
        for route in MIX:
            r = await tr.one(client, route)
            print(f"  warm-up {route}: {r.status} in {r.lat:.2f}s", flush=True)
        tr.stop_at = time.monotonic() + a.warmup
        await asyncio.gather(*(tr.worker(client) for _ in range(a.concurrency)))
        warm_n = len(tr.results)
        print(f"  warm-up: {warm_n} requests in {time.monotonic() - tw:.0f}s; "
              f"measuring {a.minutes:g} min at concurrency {a.concurrency}", flush=True)

        # the measured run
        rows0 = await feedback_written(client)
        tr.t0 = time.monotonic()
        tr.stop_at = tr.t0 + duration
        j0 = cpu_jiffies()

        async def sampler() -> None:
            next_print = a.progress_s
            while True:
                t = time.monotonic() - tr.t0
                samples.append((t, {n: proc_sample(p) for n, p in pids.items()}))
                if t >= next_print:
                    done = [r for r in tr.results[warm_n:] if r.t <= t]
                    errs = sum(r.status != "200" for r in done)
                    rss = " ".join(f"{n} {s[0] / 1024:.0f}" for n, s in samples[-1][1].items()
                                   if s)
                    print(f"  t={t:4.0f}s  {len(done)} requests, {errs} errors; RSS MiB: {rss}",
                          flush=True)
                    next_print += a.progress_s
                if t >= duration:
                    return
                await asyncio.sleep(min(a.sample_s, max(0.0, duration - t)))

        stask = asyncio.ensure_future(sampler())
        await asyncio.gather(*(tr.worker(client) for _ in range(a.concurrency)))
        wall = time.monotonic() - tr.t0
        await stask
        dj = [y - x for x, y in zip(j0, cpu_jiffies(), strict=True)]
        # end: listeners alive? subscriptions as expected?
        await asyncio.sleep(1.0)
        now = time.monotonic()
        alive = [not t.done() and now - ls.last < 2 * SSE_PING_S + 2
                 for t, ls in zip(ltasks, listeners, strict=True)]
        subs_live = await metrics_value(client, "osiris_gateway_sse_subscriptions")
        a.rows = (rows0, await feedback_written(client))
        health = (await client.get("/health")).json()
        for t in ltasks:
            t.cancel()
        await asyncio.gather(*ltasks, return_exceptions=True)
        await asyncio.sleep(1.0)
        subs_after = await metrics_value(client, "osiris_gateway_sse_subscriptions")

    measured = [r for r in tr.results[warm_n:]]
    lines = report(a, measured, wall, samples, listeners, alive, tr.published, subs_live,
                   subs_after, health, procs.dead())
    busy = 100 * (sum(dj) - dj[3]) / max(1, sum(dj))
    steal = 100 * dj[7] / max(1, sum(dj))
    lines.insert(0, f"  machine during the measured run: {busy:.0f}% busy, {steal:.0f}% steal "
                    f"(all processes, all cores)")
    return lines


def report(a: argparse.Namespace, res: list[Result], wall: float,
           samples: list[tuple[float, dict[str, tuple[int, int, int] | None]]],
           listeners: list[Listener], alive: list[bool], published: Counter[str],
           subs_live: float, subs_after: float, health: dict[str, Any],
           dead: dict[str, int]) -> list[str]:
    out: list[str] = []
    dur = a.minutes * 60.0
    # per route
    head = (f"{'route':<24} {'requests':>8} {'req/s':>7} {'p50 s':>7} {'p99 s':>7} "
            f"{'max s':>7}  errors")
    out += ["", head, "-" * len(head)]
    for route in [*MIX, "all"]:
        rs = res if route == "all" else [r for r in res if r.route == route]
        ok = [r.lat for r in rs if r.status == "200"]
        errs = Counter(r.status for r in rs if r.status != "200")
        out.append(f"{route:<24} {len(rs):>8} {len(rs) / wall:>7.2f} {fmt(pct(ok, .5), '.3f'):>7} "
                   f"{fmt(pct(ok, .99), '.3f'):>7} {fmt(max(ok, default=math.nan), '.3f'):>7}  "
                   f"{dict(errs) if errs else 0}")
    out.append(f"(latency of the answered requests, send to full answer; stream: to `event: "
               f"done`; {a.concurrency} workers, {wall:.0f}s)")
    # throughput over time, and memory at each interval's end
    names = list(samples[0][1]) if samples else []
    step = a.progress_s
    head = (f"{'t s':>9} {'req/s':>6} {'err':>4} {'p50 s':>6} {'p99 s':>6}  "
            + " ".join(f"{n[:8]:>8}" for n in names))
    out += ["", "RSS MiB at each interval's end:", head, "-" * len(head)]
    k = 0
    while k * step < dur - 1e-6:
        lo, hi = k * step, min(dur, (k + 1) * step)
        rs = [r for r in res if lo <= r.t < hi]  # completions in the interval
        ok = [r.lat for r in rs if r.status == "200"]
        smp = min(samples, key=lambda s: abs(s[0] - hi))[1]
        out.append(f"{f'{lo:.0f}-{hi:.0f}':>9} {len(rs) / (hi - lo):>6.2f} "
                   f"{sum(r.status != '200' for r in rs):>4} {fmt(pct(ok, .5), '.2f'):>6} "
                   f"{fmt(pct(ok, .99), '.2f'):>6}  "
                   + " ".join(f"{(smp[n][0] / 1024 if smp[n] else math.nan):>8.1f}"
                              for n in names))
        k += 1
    win = min(60.0, dur / 3)
    first = sum(1 for r in res if r.t < win) / win
    last = sum(1 for r in res if dur - win <= r.t < dur) / win
    out.append(f"throughput: first {win:.0f}s {first:.2f} req/s, last {win:.0f}s {last:.2f} req/s"
               f" → ratio last/first {last / first if first else math.nan:.2f} "
               f"(1.00 = no degradation)")
    # memory per process
    head = (f"{'process':<13} {'pid':>7} {'start':>7} {'mid':>7} {'end':>7} {'Δ':>6} "
            f"{'1st half':>8} {'2nd half':>8} {'limit':>6} {'thr':>7} {'fds':>9}  verdict")
    out += ["", head, "-" * len(head)]
    verdicts = []
    for n in names:
        pts = [(t, s[n][0] / 1024) for t, s in samples if s.get(n)]
        if not pts:
            out.append(f"{n:<13} gone")
            verdicts.append(False)
            continue
        start = min(pts, key=lambda p: abs(p[0]))[1]
        mid = min(pts, key=lambda p: abs(p[0] - dur / 2))[1]
        end = pts[-1][1]
        s1 = slope([p for p in pts if p[0] <= dur / 2]) * 60
        s2 = slope([p for p in pts if p[0] >= dur / 2]) * 60
        lim = max(SLOPE_ABS_MIB_MIN, SLOPE_REL_MIN * mid)
        ok = not math.isnan(s2) and s2 < lim
        verdicts.append(ok)
        first_s = next(s[n] for _, s in samples if s.get(n))
        last_s = next(s[n] for _, s in reversed(samples) if s.get(n))
        assert first_s and last_s
        out.append(f"{n:<13} {a.pids[n]:>7} {start:>7.1f} {mid:>7.1f} {end:>7.1f} "
                   f"{end - start:>+6.1f} {fmt(s1, '+.2f'):>8} {fmt(s2, '+.2f'):>8} {lim:>6.1f} "
                   f"{f'{first_s[1]}→{last_s[1]}':>7} {f'{first_s[2]}→{last_s[2]}':>9}  "
                   f"{'bounded' if ok else 'GROWING'}")
    out.append(f"(RSS MiB; 1st/2nd half: least-squares slope in MiB/min over each half's "
               f"{a.sample_s:g}s samples; rule: bounded when the 2nd-half slope < limit = "
               f"max({SLOPE_ABS_MIB_MIN:g} MiB/min, {SLOPE_REL_MIN:.0%} of the mid RSS per min);"
               f" thr: threads, fds: open files, start→end)")
    fb = [(t, s["feedback"][0] / 1024) for t, s in samples if s.get("feedback")]
    rows = a.rows[1] - a.rows[0]
    if fb and rows > 0 and a.rows[0] >= 0:
        out.append(f"feedback: {rows} LanceDB rows written during the run, RSS "
                   f"{fb[-1][1] - fb[0][1]:+.1f} MiB → {1024 * (fb[-1][1] - fb[0][1]) / rows:.0f} "
                   f"KiB per row")
    # SSE listeners
    out += ["", f"{'SSE listener (/events)':<48} {'events':>7} {'expected':>8} {'pings':>5}  "
                "connected at end"]
    for ls, ok in zip(listeners, alive, strict=True):
        pats = ls.subjects.split(",")
        expect = sum(v for k, v in published.items()
                     if any(k == p or (p.endswith(".>") and k.startswith(p[:-1])) for p in pats))
        got = sum(ls.events.values())
        out.append(f"{ls.subjects:<48} {got:>7} {expect:>8} {ls.pings:>5}  "
                   f"{'yes' if ok else 'NO: ' + (ls.ended or 'silent')}")
    out.append("(expected: events published by the requests answered 200 since the listeners "
               "subscribed, warm-up included)")
    want = sum(len(ls.subjects.split(",")) for ls in listeners)
    out.append(f"gateway NATS subscriptions for SSE: {subs_live:.0f} with the listeners open "
               f"(theirs: {want}), {subs_after:.0f} after they left (want 0)")
    # actors
    acts = sorted(health.get("actors", []), key=lambda x: x["name"])
    out.append("actors at the end (/health): " + ", ".join(
        f"{x['name']} {x['state']} handled {x['handled']} errors {x['errors']} "
        f"restarts {x['restarts']}" for x in acts) + f"; status {health.get('status')}")
    if dead:
        out.append(f"processes that exited during the run: {dead}")
    out.append("")
    for status, body in sorted(FIRST_ERROR.items()):
        out.append(f"first {status}: {body}")
    growing = [n for n, v in zip(names, verdicts, strict=True) if not v]
    mem = "GROWING in " + ", ".join(growing) if growing else "bounded in every process"
    out.append(f"verdict: memory {mem}; "
               f"{sum(r.status != '200' for r in res)} errors in {len(res)} requests; "
               f"listeners {'all connected' if all(alive) else 'NOT all connected'}")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="30 s of traffic, 5 s warm-up")
    p.add_argument("--minutes", type=float, default=3.0, help="measured traffic (default 3)")
    p.add_argument("--warmup", type=float, default=30.0, help="seconds of uncounted traffic first")
    p.add_argument("--concurrency", type=int, default=8, help="request loops (default 8)")
    p.add_argument("--listeners", type=int, default=len(LISTENERS),
                   help=f"SSE /events listeners (at most {len(LISTENERS)})")
    p.add_argument("--sample-s", type=float, default=5.0, help="memory sample period, s")
    p.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of every process")
    p.add_argument("--timeout", type=float, default=150.0, help="each HTTP request's timeout, s")
    p.add_argument("--seed", type=int, default=1, help="the route mix's random seed")
    p.add_argument("--work-dir", type=Path, default=ROOT / "build" / "bench-soak",
                   help="tiny models (built once), nats store, data_dir, logs")
    a = p.parse_args()
    if a.quick:
        a.minutes, a.warmup, a.sample_s = 0.5, 5.0, 2.0
    a.minutes = min(a.minutes, 120.0)  # bounded
    a.progress_s = 10.0 if a.minutes < 1.5 else 30.0
    a.listeners = max(0, min(a.listeners, len(LISTENERS)))
    version = subprocess.run([find_nats_server(), "--version"], capture_output=True,
                             text=True).stdout.strip()

    def on_term(*_: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)  # a plain kill still stops the children below
    from osiris_models import build_tiny

    work = a.work_dir.resolve()
    for sub in ("nats", "data", "logs"):  # a fresh store each run: growth is this run's
        shutil.rmtree(work / sub, ignore_errors=True)
    (work / "logs").mkdir(parents=True)
    tiny = build_tiny(work / "tiny-models")
    phi3 = work / "phi3-onnx-1thread"  # the tiny GenAI folder, one ORT intra-op thread
    shutil.rmtree(phi3, ignore_errors=True)
    shutil.copytree(tiny / "phi3-onnx", phi3)
    gcfg = json.loads((phi3 / "genai_config.json").read_text())
    gcfg["model"]["decoder"]["session_options"]["intra_op_num_threads"] = a.threads
    (phi3 / "genai_config.json").write_text(json.dumps(gcfg, indent=4))
    port = free_port()
    print(f"python {platform.python_version()}, {os.cpu_count()} cpus, {version}; tiny models on "
          f"CPU, one plugin per `osiris run` process, {a.threads} torch/ORT thread(s) each; "
          f"{a.minutes:g} min measured after {a.warmup:g}s warm-up, concurrency {a.concurrency},"
          f" {a.listeners} SSE listeners", flush=True)
    with EmbeddedNats(work / "nats") as srv:
        config = write_config(
            work / "osiris.toml", srv.url, PLUGINS,
            {"gateway": {"port": port, "rate_limit_per_s": 0.0, "sse_ping_s": SSE_PING_S},
             "hermes": {"model": str(tiny / "hermes"), "device": "cpu"},
             "phi3": {"model": str(phi3), "provider": "cpu"},
             "orchestrator": {"assess_max_length": 32},
             "feedback": {}},
            log_level="WARNING")
        procs = Procs(config, work / "logs",
                      {"OMP_NUM_THREADS": str(a.threads), "OSIRIS_LOG_LEVEL": "WARNING"})
        try:
            t0 = time.monotonic()
            procs.start()
            assert srv.proc is not None
            a.pids = {**procs.pids(), "nats-server": srv.proc.pid}
            print(f"  {len(PLUGINS)} processes ready in {time.monotonic() - t0:.0f}s: "
                  + ", ".join(f"{n} {pid}" for n, pid in a.pids.items()), flush=True)
            try:
                import uvloop

                lines = uvloop.run(drive(a, port, a.pids, procs))
            except ImportError:
                lines = asyncio.run(drive(a, port, a.pids, procs))
        finally:
            with contextlib.suppress(KeyboardInterrupt):
                procs.stop()
    print("\n".join(lines))
    if a.quick:
        print("(--quick: 30 s measured; too short for a memory verdict worth quoting)")


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted: every process this run started is stopped", file=sys.stderr)
        sys.exit(130)
