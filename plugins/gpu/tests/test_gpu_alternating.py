"""A budget that fits only one of hermes/phi3 (tiny, CPU): 200 alternating requests from 4
concurrent clients all get the right answer, and the gpu events tell exactly what happened."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import msgspec
import pytest

from osiris_contracts.messages import GenerateReply, GpuEvent, GpuStatus, TradeProposal
from osiris_contracts.subjects import GPU_EVENTS, GPU_STATUS, HERMES_GENERATE, PHI3_GENERATE
from osiris_core.protocol import ControlReply
from osiris_core.subjects import control

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning",
                               "ignore::UserWarning"),
]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
GiB = 1024**3
CLIENTS, PER_CLIENT = 4, 50
PROMPTS = ["AAPL after earnings?", "MSFT breakout, volume rising", "TSLA gap down"]


def _tables(tiny: Any, gpu: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {"hermes": {"model": str(tiny / "hermes"), "device": "cpu"},
            "phi3": {"model": str(tiny / "phi3-onnx"), "provider": "cpu", "few_shot": 0},
            "gpu": {"probe": "actors", "poll_s": 0, **gpu}}


async def _ctl(bus: Any, target: str, op: str) -> ControlReply:
    return await bus.request(control(target), {"op": op}, reply_type=ControlReply, timeout=60)


async def _ask(bus: Any, model: str, prompt: str) -> bytes:
    if model == "hermes":
        r = await bus.request(HERMES_GENERATE, {"prompt": prompt, "max_length": 12},
                              reply_type=GenerateReply, timeout=120)
        return r.generated_text.encode()
    p = await bus.request(PHI3_GENERATE, {"prompt": prompt, "max_length": 160},
                          reply_type=TradeProposal, timeout=120)
    return msgspec.json.encode(p)


async def test_budget_for_one_model_serves_200_alternating_requests(
        tiny_models, osiris_config, osiris_runtime, bus):
    plugins = ["hermes", "phi3", "gpu"]
    # 1. footprints, as the supervisor sees them with room for both
    cfg = osiris_config(plugins=plugins, name="measure.toml",
                        tables=_tables(tiny_models, {"budget_gb": 10.0}))
    async with osiris_runtime(cfg):
        st = await bus.request(GPU_STATUS, None, reply_type=GpuStatus, timeout=30)
    fp = {a.name: a.footprint_bytes or 0 for a in st.actors}
    budget = max(fp.values()) + min(fp.values()) // 2
    assert max(fp.values()) <= budget < sum(fp.values()), fp  # fits one, never both

    events: list[GpuEvent] = []

    async def on_event(msg: Any) -> None:
        events.append(msgspec.json.decode(msg.data, type=GpuEvent))

    sub = await bus.nc.subscribe(GPU_EVENTS.name, cb=on_event)
    await bus.nc.flush()
    cfg = osiris_config(plugins=plugins, tables=_tables(
        tiny_models, {"budget_gb": budget / GiB, "over_budget_reads": 1}))
    async with osiris_runtime(cfg):
        expected = {(m, p): await _ask(bus, m, p) for m in ("hermes", "phi3") for p in PROMPTS}
        first = (await _ctl(bus, "gpu", "poll")).result  # both resident: over budget → one goes
        assert first["paused"] == ["hermes"]  # phi3 answered last

        async def client(i: int) -> list[bool]:
            ok = []
            for k in range(PER_CLIENT):
                model = ("hermes", "phi3")[(i + k) % 2]
                prompt = PROMPTS[(i * PER_CLIENT + k) % len(PROMPTS)]
                ok.append(await _ask(bus, model, prompt) == expected[(model, prompt)])
            return ok

        results = await asyncio.wait_for(asyncio.gather(*(client(i) for i in range(CLIENTS))),
                                         600)
        assert sum(len(r) for r in results) == CLIENTS * PER_CLIENT == 200
        assert all(all(r) for r in results)

        status = await bus.request(GPU_STATUS, None, reply_type=GpuStatus, timeout=30)
        finals = {n: (await _ctl(bus, n, "status")).status for n in ("hermes", "phi3")}
    await sub.unsubscribe()

    # no request failed and nothing crashed: no actor lost its weights mid-request
    for s in finals.values():
        assert s.errors == 0 and s.restarts == 0, s
    by = {a.name: a for a in status.actors}
    assert by["hermes"].resumes >= 1 and by["phi3"].pauses >= 1  # it really switched
    for name in ("hermes", "phi3"):
        seq = [e.kind for e in events if e.actor == name and e.kind in ("paused", "resumed")]
        # the events alternate from "running", and their count is what the supervisor did
        assert seq == ["paused", "resumed"] * (len(seq) // 2) + ["paused"] * (len(seq) % 2), seq
        assert seq.count("paused") == by[name].pauses and seq.count("resumed") == by[name].resumes
        assert finals[name].state == ("paused" if seq and seq[-1] == "paused" else "running")
    for e in events:
        if e.kind == "resumed":
            assert e.used_bytes is not None and e.used_bytes <= budget, e  # room was made first
        if e.kind == "paused":
            assert e.reason in ("over_budget", f"make_room:{'phi3' if e.actor == 'hermes' else 'hermes'}")
            assert e.freed_bytes == fp[e.actor or ""]  # confirmed by the probe
    assert not [e for e in events if e.kind == "cannot_fit"]
    print(f"\nswitches: hermes {by['hermes'].pauses}/{by['hermes'].resumes}, "
          f"phi3 {by['phi3'].pauses}/{by['phi3'].resumes} (pauses/resumes)")
