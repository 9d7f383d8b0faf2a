"""Issue 23 item 5, the orchestrator's side of the dgm kernel's open holes, on a real
nats-server with the real orchestrator actor (and the real phi3 on the tiny model):

- a variant that hangs or allocates without bound only on live data is cut (its worker
  subprocess killed), counted as a violation and rolled back; the runner keeps serving;
- the policy slots reach every replica through the policy bucket, a replica started later
  takes the live slot at start, and a rollback reaches all."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from osiris_orchestrator.actor import OrchestratorActor
from osiris_orchestrator.bounded import BoundedPolicy, PolicyCut
from osiris_orchestrator.config import DEFAULT_QUERY
from osiris_orchestrator.contracts import (
    PolicyOp,
    PolicyReport,
    PolicyShadowArgs,
    PolicyShadowOp,
    PolicyState,
)
from osiris_orchestrator.policy import default_source, load_policy

from osiris_contracts.messages import MarketTick
from osiris_core import BadRequest, Config, InvalidField
from osiris_core.nats.bus import Bus
from osiris_core.runtime.node import Runtime
from osiris_core.subjects import control

pytestmark = pytest.mark.timeout(240)

PERMISSIVE = {"min_stop_pct": 0.0, "max_stop_pct": 1e9, "max_target_pct": 1e9,
              "min_confidence": 0.0, "min_reward_risk": 0.0, "allowed_sides": []}
SRC = default_source()
HEAD = "def summarise(bars):\n"
assert HEAD in SRC


def variant(body: str) -> str:
    """Variant 0 with `body` run first in summarise(): live batches have 3 bars, the
    sandbox's backtests would not have reached this branch with fewer."""
    return SRC.replace(HEAD, HEAD + body, 1)


HANGS = variant("    while len(bars) >= 3:\n        pass\n")
HOGS = variant("    if len(bars) >= 3:\n        hog = [0] * (64 * 10 ** 6)\n")
"""512 MB of list: allowed without a bound, beyond the 256 MB a worker may allocate."""
TAME = variant("    tame = 1\n")


def tick(i: int) -> MarketTick:
    return MarketTick(timestamp=f"2024-01-01T00:{i % 60:02d}:00Z", open=100.0 + i,
                      high=101.0 + i, low=99.0 + i, close=100.5 + i, volume=1000.0)


def orchestrator(rt: Runtime) -> OrchestratorActor:
    actor = rt.cell("orchestrator").actor
    assert isinstance(actor, OrchestratorActor)
    return actor


async def op(bus: Bus, name: str, **args: Any) -> dict[str, Any]:
    reply = await bus.request(control("orchestrator"), {"op": name, "args": args},
                              reply_type=dict, timeout=30)
    assert "result" in reply, reply
    result: dict[str, Any] = reply["result"]
    return result


async def until(cond: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def served(run: dict[str, Any]) -> bool:
    """A run the policy decided, or one a model ended (the tiny phi3's reply, no hermes
    here), never one the policy ended."""
    return run["status"] in ("ok", "rejected") or str(run["error"]).startswith(
        ("generate_proposal", "evaluate_proposal"))


async def feed(bus: Bus, start: int, n: int) -> int:
    for i in range(start, start + n):
        await bus.publish("market.ticks", tick(i))
    return start + n


async def test_a_live_variant_that_hangs_or_hogs_memory_is_cut_and_rolled_back(
        tiny_models: Path, osiris_config: Callable[..., Config], osiris_runtime: Any,
        fresh_nats_url: str) -> None:
    cfg = osiris_config(
        plugins=["phi3", "orchestrator"], nats=fresh_nats_url,
        tables={"phi3": {"model": str(tiny_models / "phi3-onnx"), "provider": "cpu"},
                "orchestrator": {"risk": PERMISSIVE, "ticks_per_proposal": 3,
                                 "variant_timeout_s": 1.0,
                                 "variant_memory_mb": 256}})
    async with osiris_runtime(cfg) as rt:
        orch, i = orchestrator(rt), 0
        for name, source in (("hangs", HANGS), ("hogs", HOGS)):
            await op(rt.bus, "policy_shadow", variant=name, source=source)
            live = await op(rt.bus, "policy_promote", variant=name)
            assert live["live"] == name and live["previous"] == "0"
            runs = sum(orch.runs.values())
            i = await feed(rt.bus, i, 3)  # its first live batch: the call is cut
            await until(lambda: orch.slots.live.variant == "0", f"{name} rolled back")
            assert orch.violations.get(name) == 1, orch.violations
            assert orch.slots.previous is not None and orch.slots.previous.variant == name
            # the runner goes on serving: the next batch is a whole run of variant 0
            await until(lambda runs=runs: sum(orch.runs.values()) >= runs + 1, "the cut run")
            i = await feed(rt.bus, i, 3)
            await until(lambda runs=runs: sum(orch.runs.values()) >= runs + 2, "a run after")
            assert orch.last_run is not None and orch.last_run["policy"] == "0"
            assert served(orch.last_run), orch.last_run
        facts = orch.facts()["policy"]
        assert facts["live"] == "0" and facts["violations"] == 2

        # a shadow cut clears the shadow; the live policy and its runs are untouched
        await op(rt.bus, "policy_shadow", variant="shadow-hangs", source=HANGS)
        runs = sum(orch.runs.values())
        i = await feed(rt.bus, i, 3)
        await until(lambda: orch.slots.shadow is None, "the shadow cleared")
        await until(lambda: sum(orch.runs.values()) >= runs + 1, "the run beside the shadow")
        assert orch.slots.live.variant == "0"
        assert orch.last_run is not None and served(orch.last_run), orch.last_run


async def test_the_memory_bound_is_the_worker_address_space() -> None:
    """The same 512 MB allocation: cut under 256 MB, served under 1024 MB; the worker that was
    cut is replaced by a fresh one at the next call."""
    bars = [tick(i) for i in range(3)]
    tight = BoundedPolicy(load_policy("hogs", HOGS), 30.0, 256)
    roomy = BoundedPolicy(load_policy("hogs", HOGS), 30.0, 1024)
    try:
        with pytest.raises(PolicyCut, match="out of memory"):
            await tight.summarise(bars)
        assert (await tight.summarise(bars[:2]))["ticks"] == 2 and tight.starts == 2
        assert (await roomy.summarise(bars))["ticks"] == 3
    finally:
        await tight.close()
        await roomy.close()


async def test_a_variant_whose_module_hangs_at_load_is_refused_and_never_loaded_in_process(
        osiris_config: Callable[..., Config], osiris_runtime: Any, fresh_nats_url: str) -> None:
    """Its top level runs in a probe worker first: in-process (and on every replica through
    the bucket) it would hang the actor's event loop for good."""
    cfg = osiris_config(plugins=["orchestrator"], nats=fresh_nats_url,
                        tables={"orchestrator": {"variant_timeout_s": 1.0}})
    async with osiris_runtime(cfg) as rt:
        for name, top, why in (("spins", "while True:\n    pass\n", "took over 1s"),
                               ("grabs", "GRAB = [0] * (64 * 10 ** 6)\n", "MemoryError")):
            with pytest.raises(BadRequest, match=why):
                await rt.bus.request(
                    control("orchestrator"),
                    {"op": "policy_shadow", "args": {"variant": name, "source": SRC + top}},
                    reply_type=dict, timeout=30)
            assert orchestrator(rt).slots.shadow is None
        # still serving control ops, and a sound variant still loads
        assert (await op(rt.bus, "policy_shadow", variant="tame", source=TAME))["shadow"] == "tame"


def replica(osiris_config: Callable[..., Config], url: str, tmp: Path, name: str) -> Config:
    return osiris_config(
        plugins=["orchestrator"], nats=url, name=f"{name}.toml", data_dir=str(tmp / name),
        tables={"orchestrator": {"ticks_per_proposal": 1, "phi3_timeout_s": 1.0}})


async def test_the_policy_reaches_every_replica_and_one_started_later(
        osiris_config: Callable[..., Config], osiris_runtime: Any, fresh_nats_url: str,
        tmp_path: Path) -> None:
    """No phi3 here: a run ends at generate_proposal, after the policy summarised the
    batch and wrote its prompt, which is what shows which variant a replica runs."""
    a_cfg = replica(osiris_config, fresh_nats_url, tmp_path, "a")
    b_cfg = replica(osiris_config, fresh_nats_url, tmp_path, "b")
    c_cfg = replica(osiris_config, fresh_nats_url, tmp_path, "c")
    async with osiris_runtime(a_cfg) as ra, osiris_runtime(b_cfg) as rb:
        a, b = orchestrator(ra), orchestrator(rb)
        await op(ra.bus, "policy_shadow", variant="7", source=TAME)
        await op(ra.bus, "policy_promote", variant="7")  # answered by one of the two
        await until(lambda: a.slots.live.variant == b.slots.live.variant == "7",
                    "both replicas serve 7", 15)
        assert a.slots.live.sha256 == b.slots.live.sha256
        i = 0
        while not all(r.last_run and r.last_run["policy"] == "7" for r in (a, b)):
            assert i < 200, (a.last_run, b.last_run)
            i = await feed(ra.bus, i, 1)  # the market subject is shared between replicas
            await asyncio.sleep(0.02)

        async with osiris_runtime(c_cfg) as rc:
            c = orchestrator(rc)
            # at start, before any run: the live slot from the bucket, not its empty data_dir
            assert c.slots.live.variant == "7" and c.slots.previous is not None
            assert c.slots.live.sha256 == a.slots.live.sha256
            await op(rc.bus, "policy_rollback", reason="test")
            await until(lambda: all(r.slots.live.variant == "0" for r in (a, b, c)),
                        "the rollback on all three", 15)
            assert all(r.slots.previous and r.slots.previous.variant == "7" for r in (a, b, c))
    assert (tmp_path / "b" / "policy" / "7.py").read_text() == TAME  # b persisted it too


async def test_the_policy_ops_are_typed_structs_with_typed_results(
        osiris_config: Callable[..., Config], osiris_runtime: Any, fresh_nats_url: str) -> None:
    """What the dgm kernel sends and reads: `PolicyOp` answers a `PolicyReport` (with the
    decision rules a backtest shares), a changing op the `PolicyState` after it; a bad
    argument is refused at decode time, named."""
    cfg = osiris_config(plugins=["orchestrator"], nats=fresh_nats_url,
                        tables={"orchestrator": {"variant_timeout_s": 0}})
    async with osiris_runtime(cfg) as rt:
        report = (await rt.bus.control("orchestrator", PolicyOp())).result
        assert isinstance(report, PolicyReport) and report.live == "0"
        assert report.config is not None and report.config.query == DEFAULT_QUERY
        shadow = PolicyShadowOp(args=PolicyShadowArgs(variant="tame", source=TAME))
        state = (await rt.bus.control("orchestrator", shadow)).result
        assert isinstance(state, PolicyState) and state.shadow == "tame"
        with pytest.raises(InvalidField) as err:
            await rt.bus.request(control("orchestrator"),
                                 {"op": "policy", "args": {"since": "yesterday"}})
        assert err.value.field == "args.since"
