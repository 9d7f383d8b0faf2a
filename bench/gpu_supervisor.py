"""GPU supervisor benchmark (issue 6), tiny models on CPU, each row next to a same-run baseline.

    .venv/bin/python bench/gpu_supervisor.py            # about a minute on 2 cores
    .venv/bin/python bench/gpu_supervisor.py --quick    # smoke run

Rows:
  pause / resume     the actor's own pause_s / resume_s (control op result), median of N
                     cycles, per tiny actor; baseline: a `status` control round trip
  alternating        4 clients alternating hermes/phi3 requests; requests/s and latency
                     p50/p99 with a budget that fits one model (the supervisor pauses and
                     resumes on every switch) vs the same workload with a budget that fits both
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from osiris_contracts.messages import GenerateReply, GpuStatus, TradeProposal
from osiris_contracts.subjects import GPU_STATUS, HERMES_GENERATE, PHI3_GENERATE
from osiris_core.config import load_config
from osiris_core.nats.bus import Bus, connect
from osiris_core.nats.server import EmbeddedNats
from osiris_core.protocol import ControlReply
from osiris_core.runtime.node import Runtime
from osiris_core.subjects import control
from osiris_core.testing import write_config

ROOT = Path(__file__).resolve().parent.parent
GiB = 1024**3
PROMPTS = ["AAPL after earnings?", "MSFT breakout, volume rising", "TSLA gap down"]


def tiny_dir() -> Path:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("GPTQMODEL_CPU_WORKERS", str(min(2, os.cpu_count() or 1)))
    from osiris_models import build_tiny

    return build_tiny(Path(os.environ.get("OSIRIS_TINY_MODELS") or ROOT / "build" / "tiny-models"))


def tables(tiny: Path, budget_gb: float) -> dict[str, dict[str, Any]]:
    return {"hermes": {"model": str(tiny / "hermes"), "device": "cpu"},
            "phi3": {"model": str(tiny / "phi3-onnx"), "provider": "cpu", "few_shot": 0},
            "gpu": {"probe": "actors", "poll_s": 0, "budget_gb": budget_gb,
                    "over_budget_reads": 1}}


async def ctl(bus: Bus, target: str, op: str) -> ControlReply:
    return await bus.request(control(target), {"op": op}, reply_type=ControlReply, timeout=60)


async def ask(bus: Bus, model: str, prompt: str) -> None:
    if model == "hermes":
        await bus.request(HERMES_GENERATE, {"prompt": prompt, "max_length": 12},
                          reply_type=GenerateReply, timeout=120)
    else:
        await bus.request(PHI3_GENERATE, {"prompt": prompt, "max_length": 160},
                          reply_type=TradeProposal, timeout=120)


async def workload(bus: Bus, clients: int, per_client: int) -> tuple[float, list[float]]:
    lat: list[float] = []

    async def client(i: int) -> None:
        for k in range(per_client):
            t0 = time.perf_counter()
            await ask(bus, ("hermes", "phi3")[(i + k) % 2], PROMPTS[k % len(PROMPTS)])
            lat.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    return clients * per_client / (time.perf_counter() - t0), lat


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


async def main(quick: bool) -> None:
    tiny = tiny_dir()
    cycles, per_client = (3, 10) if quick else (10, 50)
    rows: list[tuple[str, str, str, str]] = []
    with tempfile.TemporaryDirectory() as d, EmbeddedNats(Path(d) / "nats") as srv:
        nc = await connect(srv.url)
        bus = Bus(nc)

        async def run(budget_gb: float, name: str, fn: Any) -> Any:
            path = write_config(Path(d) / name, srv.url, ["hermes", "phi3", "gpu"],
                                tables(tiny, budget_gb))
            rt = Runtime(load_config(path))
            await rt.start()
            try:
                return await fn()
            finally:
                await rt.stop()

        # pause / resume per actor (budget fits both: nothing else moves)
        async def cycles_fn() -> dict[str, Any]:
            out: dict[str, Any] = {}
            st = await bus.request(GPU_STATUS, None, reply_type=GpuStatus, timeout=30)
            out["fp"] = {a.name: a.footprint_bytes or 0 for a in st.actors}
            for name in ("hermes", "phi3"):
                base, ps, rs = [], [], []
                for _ in range(cycles):
                    t0 = time.perf_counter()
                    await ctl(bus, name, "status")
                    base.append(time.perf_counter() - t0)
                    ps.append((await ctl(bus, name, "pause")).result["pause_s"])
                    rs.append((await ctl(bus, name, "resume")).result["resume_s"])
                out[name] = (statistics.median(base), statistics.median(ps),
                             statistics.median(rs))
            return out

        res = await run(10.0, "a.toml", cycles_fn)
        for name in ("hermes", "phi3"):
            base, p, r = res[name]
            rows.append((f"{name} status round trip (baseline)", f"{base * 1e3:.2f} ms", "", "1.00x"))
            rows.append((f"{name} pause (offload/drop)", f"{p * 1e3:.2f} ms", "", f"{p / base:.1f}x"))
            rows.append((f"{name} resume (reload)", f"{r * 1e3:.2f} ms", "", f"{r / base:.1f}x"))
        fp = res["fp"]
        one = (max(fp.values()) + min(fp.values()) // 2) / GiB

        async def load_fn(switching: bool) -> Any:
            for m in ("hermes", "phi3"):
                await ask(bus, m, PROMPTS[0])  # warm both
            if switching:
                await ctl(bus, "gpu", "poll")  # over budget: one is paused before the run
            rate, lat = await workload(bus, 4, per_client)
            st = await bus.request(GPU_STATUS, None, reply_type=GpuStatus, timeout=30)
            return rate, lat, sum(a.resumes for a in st.actors)

        r_both, l_both, _ = await run(10.0, "b.toml", lambda: load_fn(False))
        r_one, l_one, switches = await run(one, "c.toml", lambda: load_fn(True))
        n = 4 * per_client
        rows.append(("alternating, budget fits both (baseline)", f"{r_both:.1f} req/s",
                     f"p50 {pct(l_both, .5) * 1e3:.0f} / p99 {pct(l_both, .99) * 1e3:.0f} ms", "1.00x"))
        rows.append((f"alternating, budget fits one ({switches} resumes)", f"{r_one:.1f} req/s",
                     f"p50 {pct(l_one, .5) * 1e3:.0f} / p99 {pct(l_one, .99) * 1e3:.0f} ms",
                     f"{r_one / r_both:.2f}x"))
        await nc.close()
    print(f"python {platform.python_version()}, {os.cpu_count()} cpus, tiny models on CPU, "
          f"{cycles} pause/resume cycles, {n} requests from 4 clients")
    print(f"{'path':48} {'value':>14} {'latency':>22} {'vs base':>8}")
    print("-" * 95)
    for a, b, c, e in rows:
        print(f"{a:48} {b:>14} {c:>22} {e:>8}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    asyncio.run(main(ap.parse_args().quick))
