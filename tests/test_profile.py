"""Live profiling: the `profile` control op, `osiris.runtime.profile.<node>`, `osiris profile`
against a real `osiris run` kept busy, and the profile's bounds."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from osiris_testplugins.slow import SLOW_BURN

from osiris_core import Bus, Config
from osiris_core.cli import cli
from osiris_core.cli.profile import profile
from osiris_core.errors import InvalidField, PayloadTooLarge, ServiceError
from osiris_core.nats.bus import gather_nodes
from osiris_core.observability.profiling import Profile, ThreadProfile, decode_data, encode_result
from osiris_core.protocol import ControlReply, ProfileResult
from osiris_core.subjects import control, runtime_profile
from osiris_core.testing import OsirisProcess

cli.add_command(profile)  # as main() does


async def osiris_async(*args: str) -> Result:
    """`osiris …` (the real command group: its errors and exit codes) in a thread, off this
    test's event loop (a subprocess would spend seconds importing on a loaded box)."""
    return await asyncio.to_thread(CliRunner().invoke, cli, list(args))


def check_speedscope(doc: dict[str, Any]) -> list[str]:
    """The structure of https://www.speedscope.app/file-format-schema.json ("sampled"
    profiles); returns the names of the frames some sample holds."""
    assert doc["$schema"] == "https://www.speedscope.app/file-format-schema.json"
    frames = doc["shared"]["frames"]
    assert frames and all(isinstance(f["name"], str) for f in frames)
    assert doc["profiles"] and 0 <= doc["activeProfileIndex"] < len(doc["profiles"])
    seen: set[int] = set()
    for p in doc["profiles"]:
        assert p["type"] == "sampled" and p["unit"] == "seconds" and isinstance(p["name"], str)
        assert len(p["samples"]) == len(p["weights"])
        assert all(w >= 0 for w in p["weights"])
        assert p["endValue"] >= p["startValue"] == 0
        for stack in p["samples"]:
            assert all(isinstance(i, int) and 0 <= i < len(frames) for i in stack)
            seen.update(stack)
    return [frames[i]["name"] for i in seen]


async def test_osiris_profile_of_a_busy_process_shows_the_executor_threads_frame(
        osiris_config: Callable[..., Config], bus: Bus, tmp_path: Path) -> None:
    cfg = osiris_config(plugins=["slow"], tables={"slow": {"delay_s": 0.05}})
    busy = True

    async def keep_busy() -> int:  # one executor thread hashing all along, like a generation
        n = 0
        while busy:
            await bus.request(SLOW_BURN, {"seconds": 0.5}, timeout=30)
            n += 1
        return n

    with OsirisProcess(cfg.path):
        burning = asyncio.ensure_future(keep_busy())
        out = tmp_path / "slow.speedscope.json"
        r = await osiris_async("profile", "slow", "--seconds", "1", "-o", str(out),
                               "-c", str(cfg.path))
        assert r.exit_code == 0, r.output
        assert f"wrote {out}" in r.stdout
        assert "burn_cpu" in r.stdout.split("top frames", 1)[1]  # the busy frame tops the list
        names = check_speedscope(json.loads(out.read_text()))
        assert "burn_cpu" in names
        doc = json.loads(out.read_text())
        threads = [p["name"] for p in doc["profiles"]]
        assert any("event loop" in t for t in threads) and len(threads) >= 2

        (node,) = [n.node for n in await gather_nodes(bus, 0.5) if n.actors]
        page = tmp_path / "node.html"
        r = await osiris_async("profile", node, "--seconds", "1", "--format", "html",
                               "-o", str(page), "-c", str(cfg.path))
        assert r.exit_code == 0, r.output
        html = page.read_text()
        assert html.lstrip().lower().startswith("<!doctype html") and "burn_cpu" in html
        busy = False
        assert await burning >= 2


async def test_osiris_profile_of_an_unknown_target_says_so(
        osiris_config: Callable[..., Config]) -> None:
    cfg = osiris_config(plugins=[])
    r = await osiris_async("profile", "nobody", "--seconds", "0.1", "-c", str(cfg.path))
    assert r.exit_code == 1, r.output
    assert "no live actor or node named 'nobody'" in r.stderr


async def test_the_profile_op_is_bounded_and_one_at_a_time(
        osiris_config: Callable[..., Config], osiris_runtime: Any, bus: Bus) -> None:
    async with osiris_runtime(osiris_config(plugins=["slow"])) as rt:
        for seconds in (0.05, 61):
            with pytest.raises(InvalidField, match="seconds"):
                await bus.request(control("slow"), {"op": "profile", "args": {"seconds": seconds}})
            with pytest.raises(InvalidField, match="seconds"):
                await bus.request(runtime_profile(rt.node), {"seconds": seconds})
        with pytest.raises(InvalidField, match="format"):
            await bus.request(control("slow"), {"op": "profile", "args": {"format": "pdf"}})

        first = asyncio.ensure_future(bus.request(
            control("slow"), {"op": "profile", "args": {"seconds": 1}}, reply_type=ControlReply,
            timeout=30))
        await asyncio.sleep(0.3)
        with pytest.raises(ServiceError, match="already running") as busy:
            await bus.request(runtime_profile(rt.node), {"seconds": 0.2}, timeout=10)
        assert busy.value.code == 409
        reply = await first
        result = ProfileResult(**reply.result) if isinstance(reply.result, dict) else None
        assert result is not None and result.format == "speedscope" and result.node == rt.node
        check_speedscope(json.loads(decode_data(result)))

        # free again once the first is done; the node subject answers a ProfileResult
        again = await bus.request(runtime_profile(rt.node), {"seconds": 0.2, "format": "html"},
                                  reply_type=ProfileResult, timeout=30)
        assert b"<html" in decode_data(again).lower()


def test_a_profile_too_big_for_max_payload_is_merged_then_refused() -> None:
    rng = random.Random(1)
    busy = ThreadProfile("worker", 1)
    for i in range(5000):  # alternating stacks: nothing for run-length to merge
        leaf = "b\x00/app/f.py\x002" if i % 2 else "c\x00/app/f.py\x003"
        busy.add(("a\x00/app/f.py\x001", leaf), rng.random() / 100)
    idle = ThreadProfile("idle", 2)
    idle.add(("_bootstrap\x00/usr/lib/threading.py\x001", "wait\x00/usr/lib/threading.py\x00300"),
             60.0, 12000)
    prof = Profile("synthetic", 0.0, 1.0, [busy, idle])
    assert sorted(f.name for f in prof.top()) == ["b", "c"]  # the waiting thread is not "top"
    assert prof.top()[0].samples == 2500

    full = encode_result(prof, "speedscope", 10**9)
    assert not full.merged
    budget = len(encode_result(prof.merged(), "speedscope", 10**9).data) + 8192 + 10
    assert len(full.data) + 8192 > budget
    small = encode_result(prof, "speedscope", budget)
    assert small.merged and len(small.data) + 8192 <= budget
    doc = json.loads(decode_data(small))
    check_speedscope(doc)
    (worker,) = [p for p in doc["profiles"] if p["name"] == "thread worker"]
    assert len(worker["samples"]) == 2
    assert sum(worker["weights"]) == pytest.approx(sum(w for _, w, _ in busy.samples), rel=1e-4)
    with pytest.raises(PayloadTooLarge, match="fewer seconds"):
        encode_result(prof, "speedscope", 8192 + 50)
