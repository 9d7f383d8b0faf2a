"""Policy-loop benchmark (issue 5): sim publish rate, proposals per minute end to end on the
tiny models, durable feedback ingest — each next to a baseline measured in the same run.

    .venv/bin/python bench/loop.py            # about two minutes on 2 cores
    .venv/bin/python bench/loop.py --quick    # smoke run

Everything runs against a private nats-server (free port, temp dir) and LanceDB in a temp
dir. Rows:
  sim ticks/s        osiris_sim.replay at `max` (decode-free: bars → JSON → nc.publish)
                     vs baseline: nc.publish of pre-encoded bytes in a bare loop
  proposals/min      Workflow.run (query_market → phi3 → risk gate → hermes → events →
                     run record) on the real tiny hermes/phi3 actors, sequential
                     vs baseline: the same phi3 + hermes requests alone, no workflow
  feedback items/s   osiris.feedback.submit to a feedback actor in its own process
                     (`osiris run`), acked (durable in JetStream), N in flight, and until
                     all are rows in LanceDB
                     vs baseline: raw JetStream publish, same N in flight
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import msgspec

from osiris_contracts.messages import FeedbackAck, GenerateReply, GenerateRequest, TradeProposal
from osiris_contracts.subjects import FEEDBACK_SUBMIT, HERMES_GENERATE, PHI3_GENERATE
from osiris_core.config import load_config
from osiris_core.nats.bus import Bus, connect
from osiris_core.nats.server import EmbeddedNats
from osiris_core.runtime.node import Runtime
from osiris_core.testing import OsirisProcess, write_config

ROOT = Path(__file__).resolve().parent.parent
PERMISSIVE = {"min_stop_pct": 0.0, "max_stop_pct": 1e9, "max_target_pct": 1e9,
              "min_confidence": 0.0, "min_reward_risk": 0.0, "allowed_sides": []}


async def bench_sim(bus: Bus, bars: int) -> tuple[float, float]:
    from osiris_sim.csvdata import load_bars, make_data
    from osiris_sim.replay import replay

    with tempfile.TemporaryDirectory() as d:
        loaded = load_bars(make_data(Path(d) / "m.csv", bars=bars, seed=1))
    nc = bus.nc
    data = [msgspec.json.encode(b) for b in loaded.bars]
    t0 = time.perf_counter()
    for i, payload in enumerate(data):
        await nc.publish("bench.raw", payload)
        if i % 1000 == 999:
            await nc.flush()
    await nc.flush()
    raw = bars / (time.perf_counter() - t0)

    async def publish(b: bytes) -> None:
        await nc.publish("bench.sim", b)

    t0 = time.perf_counter()
    await replay(loaded.bars, publish, speed=None, flush=nc.flush)
    sim = bars / (time.perf_counter() - t0)
    return raw, sim


async def bench_proposals(bus: Bus, cfg: Any, runs: int) -> tuple[float, float, dict[str, int]]:
    from osiris_orchestrator.config import OrchestratorConfig
    from osiris_orchestrator.workflow import Workflow, assessment_prompt, proposal_prompt

    ocfg = cfg
    t0 = time.perf_counter()
    for _ in range(runs):
        p = await bus.request(PHI3_GENERATE, GenerateRequest(
            prompt=proposal_prompt("Review the market.", {"ticks": 0}),
            max_length=ocfg.max_length), reply_type=TradeProposal, timeout=120)
        await bus.request(HERMES_GENERATE, GenerateRequest(
            prompt=assessment_prompt(p), max_length=ocfg.assess_max_length),
            reply_type=GenerateReply, timeout=120)
    raw = runs * 60 / (time.perf_counter() - t0)
    flow = Workflow(bus, ocfg)
    statuses: dict[str, int] = {}
    t0 = time.perf_counter()
    for _ in range(runs):
        res = await flow.run("Review the market.", [])
        statuses[res.run.status] = statuses.get(res.run.status, 0) + 1
    wf = runs * 60 / (time.perf_counter() - t0)
    assert isinstance(ocfg, OrchestratorConfig)
    return raw, wf, statuses


async def bench_feedback(bus: Bus, n: int, inflight: int, db_dir: Path) -> tuple[float, float, float]:
    import lancedb
    from nats.js.api import StreamConfig

    await bus.js.add_stream(StreamConfig(name="BENCH_RAW", subjects=["bench.raw.js"],
                                         duplicate_window=120.0))
    gate = asyncio.Semaphore(inflight)

    async def raw_one(i: int) -> None:
        async with gate:
            await bus.js.publish("bench.raw.js", b'{"transaction_id":"t","feedback_type":"r"}',
                                 headers={"Nats-Msg-Id": f"r{i}"})

    t0 = time.perf_counter()
    await asyncio.gather(*(raw_one(i) for i in range(n)))
    raw = n / (time.perf_counter() - t0)
    run = uuid.uuid4().hex[:6]

    async def submit(i: int) -> None:
        async with gate:
            await bus.request(FEEDBACK_SUBMIT, {"transaction_id": f"t{i % 100}",
                                                "feedback_type": "rating",
                                                "feedback_content": {"stars": i % 5},
                                                "feedback_id": f"{run}-{i}"},
                              reply_type=FeedbackAck, timeout=30)

    t0 = time.perf_counter()
    await asyncio.gather(*(submit(i) for i in range(n)))
    acked = n / (time.perf_counter() - t0)
    tbl = lancedb.connect(str(db_dir)).open_table("feedback")
    while tbl.count_rows() < n:
        await asyncio.sleep(0.02)
        tbl.checkout_latest()
    stored = n / (time.perf_counter() - t0)
    return raw, acked, stored


async def main(quick: bool) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    tiny = Path(os.environ.get("OSIRIS_TINY_MODELS") or ROOT / "build" / "tiny-models")
    if not (tiny / "phi3-onnx").exists():
        raise SystemExit(f"no tiny models in {tiny}: run 'osiris models tiny {tiny}' first")
    bars, runs, n = (20_000, 5, 2_000) if quick else (100_000, 20, 10_000)
    inflight = 256
    with tempfile.TemporaryDirectory(prefix="osiris-bench-loop-") as d, \
            EmbeddedNats(Path(d) / "nats") as srv:
        path = write_config(Path(d) / "osiris.toml", srv.url,
                            ["hermes", "phi3", "orchestrator", "feedback"],
                            {"hermes": {"model": str(tiny / "hermes"), "device": "cpu"},
                             "phi3": {"model": str(tiny / "phi3-onnx"), "provider": "cpu"},
                             "feedback": {"max_concurrency": inflight},
                             "orchestrator": {"risk": PERMISSIVE, "assess_max_length": 32}})
        config = load_config(path)
        rt = Runtime(config)
        await rt.start()
        try:
            nc = await connect(srv.url, name="bench-loop")
            bus = Bus(nc)
            sim_raw, sim = await bench_sim(bus, bars)
            from osiris_orchestrator.config import OrchestratorConfig

            ocfg = config.plugin("orchestrator", OrchestratorConfig)
            await bench_proposals(bus, ocfg, 1)  # warm-up (first generations are slower)
            p_raw, p_wf, statuses = await bench_proposals(bus, ocfg, runs)
        finally:
            await rt.stop()
        # the feedback actor alone, in its own process, as `osiris run --only feedback`
        (Path(d) / "fb").mkdir()
        fpath = write_config(Path(d) / "fb" / "osiris.toml", srv.url, ["feedback"],
                             {"feedback": {"max_concurrency": inflight}})
        with OsirisProcess(fpath):
            f_raw, f_acked, f_stored = await bench_feedback(
                bus, n, inflight, load_config(fpath).data_dir / "lancedb")
        await nc.close()
    print(f"python {platform.python_version()}, {os.cpu_count()} cpus, nats-server private, "
          f"tiny models {tiny}")
    print(f"{'measure':<40} {'baseline':>12} {'osiris':>12} {'ratio':>7}  baseline is")
    print("-" * 102)
    rows = [
        (f"sim ticks/s at max ({bars:,})", sim_raw, sim, "nc.publish of pre-encoded bars"),
        (f"proposals/min ({runs} runs)", p_raw, p_wf, "phi3 + hermes requests alone"),
        (f"feedback acked/s ({n:,}, {inflight} in fl.)", f_raw, f_acked, "raw JetStream publish"),
        ("feedback stored/s (in LanceDB)", f_raw, f_stored, "raw JetStream publish"),
    ]
    for name, base, ours, what in rows:
        print(f"{name:<40} {base:>12,.1f} {ours:>12,.1f} {ours / base:>6.2f}x  {what}")
    print(f"workflow outcomes: {statuses}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    try:
        import uvloop

        uvloop.run(main(args.quick))
    except ImportError:
        asyncio.run(main(args.quick))
