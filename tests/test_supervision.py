"""Crash → restart with backoff; crash loop → failed; neighbours unaffected; pause gate."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from osiris_core import (
    Actor,
    BadRequest,
    Config,
    EventMeta,
    PluginConfig,
    ServiceError,
    Unavailable,
    on_event,
)
from osiris_core.nats.bus import Bus, connect
from osiris_core.protocol import ControlReply
from osiris_core.subjects import Subject
from osiris_core.testing import plugin_module

FAST = {"backoff_initial_s": 0.05, "backoff_max_s": 0.2, "restart_window_s": 30.0}


async def wait_state(rt: Any, actor: str, *states: str, timeout: float = 5.0) -> None:
    async def poll() -> None:
        while rt.cell(actor).state.value not in states:
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout)


async def test_crashed_handler_is_restarted_and_keeps_serving(
    osiris_config: Callable[..., Config], osiris_runtime: Any, bus: Bus
) -> None:
    cfg = osiris_config(plugins=["crashy"], tables={"crashy": {**FAST, "max_restarts": 5}})
    async with osiris_runtime(cfg) as rt:
        first = await bus.request("test.crashy.call", {})
        with pytest.raises(ServiceError) as err:
            await bus.request("test.crashy.call", {"fatal": True})
        assert err.value.code == 500 and "crash on purpose" in err.value.message
        # the request right after the crash waits for the restart instead of failing
        second = await bus.request("test.crashy.call", {})
        assert second["instance"] != first["instance"]  # a fresh actor instance
        cell = rt.cell("crashy")
        assert cell.restarts == 1 and cell.state.value == "running"
        assert "crash on purpose" in (cell.last_error or "")


async def test_expected_errors_do_not_restart(
    osiris_config: Callable[..., Config], osiris_runtime: Any, bus: Bus
) -> None:
    cfg = osiris_config(plugins=["crashy"])
    async with osiris_runtime(cfg) as rt:
        with pytest.raises(BadRequest) as err:
            await bus.request("test.crashy.call", {"refuse": True})
        assert err.value.field == "refuse"
        assert rt.cell("crashy").restarts == 0


async def test_crash_loop_marks_failed_and_neighbours_keep_answering(
    osiris_config: Callable[..., Config], osiris_runtime: Any, bus: Bus
) -> None:
    cfg = osiris_config(plugins=["crashy"], tables={"crashy": {**FAST, "max_restarts": 2}})
    async with osiris_runtime(cfg) as rt:
        for _ in range(3):
            with pytest.raises(ServiceError):
                await bus.request("test.crashy.call", {"fatal": True}, timeout=5)
            await wait_state(rt, "crashy", "running", "failed")
        await wait_state(rt, "crashy", "failed")
        # a failed actor leaves its queue group: nobody serves the subject any more
        with pytest.raises(Unavailable):
            await bus.request("test.crashy.call", {}, timeout=2)
        # ... but still reports itself, and the neighbour is untouched
        reply = await bus.request("osiris.crashy.control", {"op": "status"},
                                  reply_type=ControlReply)
        assert reply.status.state == "failed" and reply.status.restarts == 3
        assert (await bus.request("test.steady.call"))["ok"] == "steady"
        node = rt.status()
        states = {a.name: a.state for a in node.actors}
        assert states == {"crashy": "failed", "steady": "running"}
        # an operator can restart it by hand
        again = await bus.request("osiris.crashy.control", {"op": "restart"},
                                  reply_type=ControlReply)
        assert again.status.state == "running"
        assert "instance" in await bus.request("test.crashy.call", {})


async def test_backoff_grows_between_restarts(
    osiris_config: Callable[..., Config], osiris_runtime: Any, bus: Bus
) -> None:
    cfg = osiris_config(plugins=["crashy"], tables={"crashy": {
        "backoff_initial_s": 0.2, "backoff_max_s": 5.0, "max_restarts": 10}})
    async with osiris_runtime(cfg) as rt:
        cell = rt.cell("crashy")
        gaps = []
        for _ in range(3):
            with pytest.raises(ServiceError):
                await bus.request("test.crashy.call", {"fatal": True})
            t0 = asyncio.get_running_loop().time()
            await bus.request("test.crashy.call", {})  # waits for the restart
            gaps.append(asyncio.get_running_loop().time() - t0)
        assert cell.restarts == 3
        # equal jitter: restart n waits between base*2^(n-1)/2 and base*2^(n-1)
        assert gaps[0] >= 0.1 and gaps[1] >= 0.2 and gaps[2] >= 0.4, gaps


async def test_pause_holds_requests_until_resume(
    osiris_config: Callable[..., Config], osiris_runtime: Any, bus: Bus
) -> None:
    cfg = osiris_config(plugins=["example"])
    async with osiris_runtime(cfg) as rt:
        paused = await bus.request("osiris.example.control", {"op": "pause"},
                                   reply_type=ControlReply)
        assert paused.status.state == "paused" and "pause_s" in paused.result
        pending = asyncio.ensure_future(bus.request("osiris.example.echo", {"text": "wait"}))
        await asyncio.sleep(0.2)
        assert not pending.done() and rt.cell("example").in_flight == 1
        resumed = await bus.request("osiris.example.control", {"op": "resume"},
                                    reply_type=ControlReply)
        assert resumed.status.state == "running" and "resume_s" in resumed.result
        assert (await asyncio.wait_for(pending, 5))["text"] == "wait"


async def test_request_to_a_paused_actor_gets_503_after_the_bounded_wait(
    osiris_config: Callable[..., Config], osiris_runtime: Any, bus: Bus
) -> None:
    cfg = osiris_config(plugins=["example"], tables={"example": {"request_wait_s": 0.3}})
    async with osiris_runtime(cfg):
        await bus.request("osiris.example.control", {"op": "pause"})
        with pytest.raises(Unavailable) as err:
            await bus.request("osiris.example.echo", {"text": "x"})
        assert err.value.code == 503 and "paused" in err.value.message


async def test_concurrency_is_bounded(
    osiris_config: Callable[..., Config], osiris_runtime: Any, bus: Bus
) -> None:
    cfg = osiris_config(plugins=["slow"], tables={"slow": {"max_concurrency": 4,
                                                           "delay_s": 0.05}})
    async with osiris_runtime(cfg) as rt:
        replies = await asyncio.gather(
            *(bus.request("test.slow.work", {"n": i}) for i in range(40)))
        assert sorted(r["n"] for r in replies) == list(range(40))
        assert rt.cell("slow").actor.facts()["peak"] == 4  # type: ignore[union-attr]


async def test_on_stop_runs_before_background_tasks_are_cancelled(
    osiris_config: Callable[..., Config], osiris_runtime: Any
) -> None:
    async with osiris_runtime(osiris_config(plugins=["slow"])) as rt:
        actor = rt.cell("slow").actor
        assert actor.ended == ""
    assert actor.ended == "gracefully"


async def test_a_failing_request_is_that_requests_500_and_never_a_restart(
    osiris_config: Callable[..., Config], osiris_runtime: Any, bus: Bus
) -> None:
    cfg = osiris_config(plugins=["crashy"], tables={"crashy": {**FAST, "max_restarts": 1}})
    async with osiris_runtime(cfg) as rt:
        first = await bus.request("test.crashy.call", {})
        for _ in range(20):  # far beyond the restart intensity
            with pytest.raises(ServiceError) as err:
                await bus.request("test.crashy.call", {"crash": True})
            assert err.value.code == 500 and "fail on purpose" in err.value.message
        cell = rt.cell("crashy")
        assert cell.restarts == 0 and cell.state.value == "running"
        assert (await bus.request("test.crashy.call", {}))["instance"] == first["instance"]
        ep = cell.micro.endpoint("call") if cell.micro else None
        assert ep is not None and ep.errors_by_code == {500: 20}


class _SubConfig(PluginConfig, frozen=True, kw_only=True):
    channel: str = "test.dyn.ticks"


SEEN: list[Any] = []


class _Dyn(Actor[_SubConfig]):
    name = "dyn"

    async def on_start(self) -> None:
        await self.subscribe(self.config.channel, self.tick)

    async def tick(self, evt: Any, meta: EventMeta) -> None:
        if evt.get("bad"):
            raise RuntimeError("bad tick")
        SEEN.append((evt["n"], meta.subject))


async def test_a_run_time_subscription_gets_the_framework_guarantees(
    osiris_config: Callable[..., Config], osiris_runtime: Any, bus: Bus
) -> None:
    SEEN.clear()
    cfg = osiris_config(plugins=["dyn"], tables={"dyn": {"channel": "test.dyn.feed", **FAST}})
    dyn = plugin_module("dyn", actors=[_Dyn], config=_SubConfig)
    async with osiris_runtime(cfg, extra_plugins={"dyn": dyn}) as rt:
        cell = rt.cell("dyn")
        for n in range(3):
            await bus.publish("test.dyn.feed", {"n": n})
        await bus.publish("test.dyn.feed", {"bad": True})  # fails: logged, no restart
        await bus.publish("test.dyn.feed", b"{not json")   # dropped with a log line
        await wait_seen(3)
        assert cell.restarts == 0 and cell.errors == 1
        # paused: events wait, and are handled once resumed
        await bus.request("osiris.dyn.control", {"op": "pause"})
        await bus.publish("test.dyn.feed", {"n": 10})
        await asyncio.sleep(0.3)
        assert [n for n, _ in SEEN] == [0, 1, 2]
        await bus.request("osiris.dyn.control", {"op": "resume"})
        await wait_seen(4)
        # a restart subscribes again through on_start, once (no double delivery)
        await bus.request("osiris.dyn.control", {"op": "restart"})
        await bus.publish("test.dyn.feed", {"n": 20})
        await wait_seen(5)
        await asyncio.sleep(0.2)
        assert SEEN == [(0, "test.dyn.feed"), (1, "test.dyn.feed"), (2, "test.dyn.feed"),
                        (10, "test.dyn.feed"), (20, "test.dyn.feed")]


async def wait_seen(n: int, timeout: float = 5.0) -> None:
    async def poll() -> None:
        while len(SEEN) < n:
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout)


async def test_status_tells_requests_served_from_requests_waiting_for_a_slot(
    osiris_config: Callable[..., Config], osiris_runtime: Any, bus: Bus
) -> None:
    cfg = osiris_config(plugins=["slow"], tables={"slow": {"max_concurrency": 2,
                                                           "delay_s": 1.0}})
    async with osiris_runtime(cfg) as rt:
        calls = [asyncio.ensure_future(bus.request("test.slow.work", {"n": i}))
                 for i in range(6)]
        cell = rt.cell("slow")
        for _ in range(200):
            st = cell.status()
            if st.in_flight == 2 and st.waiting == 4:
                break
            await asyncio.sleep(0.01)
        assert (st.in_flight, st.waiting) == (2, 4)
        assert len(await asyncio.gather(*calls)) == 6
        assert cell.status().waiting == 0


class Durable(msgspec.Struct):
    n: int


DURABLE_ITEMS = Subject("test.revive.items", "event", "revive", Durable, durable=True)
TAKEN: list[int] = []


class ReviveActor(Actor[PluginConfig]):
    name = "revive"

    @on_event(DURABLE_ITEMS)
    async def take(self, item: Durable) -> None:
        TAKEN.append(item.n)


async def test_a_durable_consumer_that_could_not_bind_starts_again_with_the_restart(
    osiris_config: Callable[..., Config], osiris_runtime: Any, fresh_nats_url: str
) -> None:
    """A consumer whose bind timed out (a JetStream cluster busy in a leader election, seen in
    CI) crashes the actor; the restarted actor must consume again, not run without it."""
    TAKEN.clear()
    cfg = osiris_config(plugins=["revive"], nats=fresh_nats_url,
                        tables={"revive": {**FAST, "max_restarts": 5}})
    plugin = {"revive": plugin_module("revive", actors=[ReviveActor], subjects=[DURABLE_ITEMS])}
    bus = Bus(await connect(fresh_nats_url))
    try:
        async with osiris_runtime(cfg, extra_plugins=plugin) as rt:
            cell = rt.cell("revive")
            loop = cell.consumers[DURABLE_ITEMS.name]
            # what `EventRunner.consume` does when it cannot bind: crash the actor and end
            loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop
            cell.crash(TimeoutError("nats: timeout (binding the durable consumer)"))
            await wait_state(rt, "revive", "starting")
            await wait_state(rt, "revive", "running")
            assert cell.restarts == 1
            assert not cell.consumers[DURABLE_ITEMS.name].done()  # a new loop
            for n in range(5):
                await bus.publish(DURABLE_ITEMS, Durable(n=n), msg_id=f"revive-{n}")
            for _ in range(200):
                if len(TAKEN) == 5:
                    break
                await asyncio.sleep(0.05)
            assert sorted(TAKEN) == [0, 1, 2, 3, 4]
    finally:
        await bus.nc.close()
