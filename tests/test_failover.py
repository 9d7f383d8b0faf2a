"""A dead replica loses no request (DESIGN §13): a caller learns from the replica's
heartbeat, within seconds, that the replica serving its idempotent request died or was cut
off, and re-sends it once to a live one; a healthy slow replica is never second-guessed."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable
from typing import Any

import msgspec
import nats
import pytest
from nats.aio.msg import Msg
from osiris_testplugins.slow import SLOW_COUNT, SLOW_WORK

from osiris_contracts.messages import GenerateChunk
from osiris_core import Config, ServiceError, Unavailable
from osiris_core.errors import ERROR_CODE_HEADER, ERROR_HEADER, RETRY_ELSEWHERE_HEADER
from osiris_core.nats.bus import Bus, gather_nodes, raise_for_error
from osiris_core.nats.watch import ATTEMPT_HEADER, LOST_AFTER_S
from osiris_core.runtime.dispatch import respond_error
from osiris_core.testing import OsirisProcess

pytestmark = pytest.mark.timeout(120)


async def _in_flight(bus: Bus, want: int, replicas: int = 2) -> dict[int, int]:
    """Wait until `replicas` processes each have slow requests in flight, `want` in all;
    returns pid → in flight."""
    for _ in range(400):
        nodes = await gather_nodes(bus, 0.3)
        flight = {n.pid: sum(a.in_flight for a in n.actors if a.name == "slow") for n in nodes}
        flight = {pid: k for pid, k in flight.items() if k}
        if len(flight) == replicas and sum(flight.values()) >= want:
            return flight
        await asyncio.sleep(0.02)
    raise AssertionError(f"not {want} in flight on {replicas} replicas")


def _two(osiris_config: Callable[..., Config], **slow: Any) -> tuple[OsirisProcess, OsirisProcess]:
    cfg = osiris_config(plugins=["slow"], tables={"slow": slow}, shutdown_timeout_s=3.0)
    assert cfg.path is not None
    return OsirisProcess(cfg.path).start(), OsirisProcess(cfg.path).start()


async def test_kill_9_of_a_replica_with_32_in_flight_loses_no_request(
    osiris_config: Callable[..., Config], bus: Bus
) -> None:
    a, b = _two(osiris_config, delay_s=3.0)
    try:
        t0 = time.monotonic()
        calls = [asyncio.ensure_future(bus.request(SLOW_WORK, {"n": i}, timeout=60))
                 for i in range(32)]
        flight = await _in_flight(bus, 32)
        assert a.proc is not None and b.proc is not None
        lost = flight[a.proc.pid]
        a.kill()  # SIGKILL: no goodbye, the requests it holds vanish with it
        replies = await asyncio.gather(*calls)
        took = time.monotonic() - t0
        assert sorted(r["n"] for r in replies) == list(range(32))
        # the victim died before finishing any (3 s each): the survivor answered them all
        assert {r["pid"] for r in replies} == {b.proc.pid}
        print(f"32 in flight, kill -9 of the replica holding {lost}: all answered in "
              f"{took:.1f}s (a request takes 3.0s; silence counts after {LOST_AFTER_S}s)")
    finally:
        a.kill()
        b.kill()


async def test_a_replica_cut_off_by_its_shutdown_hands_its_requests_to_another(
    osiris_config: Callable[..., Config], bus: Bus
) -> None:
    a, b = _two(osiris_config, delay_s=6.0)  # longer than a's shutdown budget of 3 s
    try:
        calls = [asyncio.ensure_future(bus.request(SLOW_WORK, {"n": i}, timeout=60))
                 for i in range(16)]
        await _in_flight(bus, 16)
        a.signal(signal.SIGTERM)
        assert a.wait(10) == 0
        replies = await asyncio.gather(*calls)
        assert sorted(r["n"] for r in replies) == list(range(16))
        assert b.proc is not None and {r["pid"] for r in replies} == {b.proc.pid}
    finally:
        a.kill()
        b.kill()


async def test_a_stream_whose_replica_dies_mid_way_fails_at_once_with_a_clear_error(
    osiris_config: Callable[..., Config], bus: Bus
) -> None:
    cfg = osiris_config(plugins=["slow"], tables={"slow": {}})
    assert cfg.path is not None
    a = OsirisProcess(cfg.path).start()
    try:
        got: list[GenerateChunk] = []
        with pytest.raises(Unavailable, match=r"stopped answering after \d+ chunks") as err:
            async for chunk in bus.stream(SLOW_COUNT, {"n": 100, "pause_s": 0.2},
                                          item_type=GenerateChunk, timeout=60):
                got.append(chunk)
                if len(got) == 3:
                    a.kill()
        # a 503 from the heartbeat, not the 504 of the 60 s chunk timeout
        assert err.value.code == 503 and len(got) >= 3
    finally:
        a.kill()


async def test_a_healthy_slow_replica_is_not_second_guessed(
    osiris_config: Callable[..., Config], osiris_runtime: Any, bus: Bus
) -> None:
    """A request that runs longer than the silence limit is kept alive by notices: it runs
    once, and its reply comes from the replica that took it."""
    cfg = osiris_config(plugins=["slow"], tables={"slow": {"delay_s": LOST_AFTER_S + 2}})
    async with osiris_runtime(cfg) as rt:
        reply = await bus.request(SLOW_WORK, {"n": 1}, timeout=30)
        assert reply["n"] == 1
        cell = rt.cell("slow")
        assert cell.handled == 1 and cell.errors == 0


@pytest.mark.parametrize("stopped", ["while_running", "before_it_arrives"])
async def test_a_re_send_to_the_replica_still_serving_it_runs_once(
    osiris_config: Callable[..., Config], bus: Bus, caplog: pytest.LogCaptureFixture,
    stopped: str,
) -> None:
    """A replica that goes quiet for longer than the silence limit but is not dead (SIGSTOP,
    as a host that stalls) gets the caller's re-send itself, the only replica there is. It
    still serves the first — already running, or read just before the re-send from the same
    socket — so it says "working" and lets that run answer instead of running it twice."""
    cfg = osiris_config(plugins=["slow"], tables={"slow": {"delay_s": LOST_AFTER_S + 3}})
    assert cfg.path is not None
    a = OsirisProcess(cfg.path).start()
    caplog.set_level(logging.WARNING, logger="osiris.watch")
    try:
        if stopped == "before_it_arrives":
            a.signal(signal.SIGSTOP)
        call = asyncio.ensure_future(bus.request(SLOW_WORK, {"n": 7}, timeout=60))
        if stopped == "while_running":
            await _in_flight(bus, 1, replicas=1)
            a.signal(signal.SIGSTOP)
        for _ in range(200):  # until the caller has re-sent (it takes the replica for dead)
            if any("re-sending request" in r.getMessage() for r in caplog.records):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the caller never re-sent")
        a.signal(signal.SIGCONT)
        reply = await call
        assert reply["n"] == 7
        nodes = await gather_nodes(bus, 0.5)
        slow = [x for n in nodes for x in n.actors if x.name == "slow"]
        # nothing else runs: a second run would still be in flight (it started on SIGCONT)
        assert [(x.handled, x.in_flight) for x in slow] == [(1, 0)], slow
        assert "re-sent while still being served here" in a.output()
    finally:
        a.signal(signal.SIGCONT)
        a.kill()


async def test_a_non_idempotent_request_is_not_retried(
    osiris_config: Callable[..., Config], bus: Bus
) -> None:
    """Without `retry`, a replica that dies is the caller's timeout, as before: a write is
    never done twice behind its caller's back."""
    cfg = osiris_config(plugins=["slow"], tables={"slow": {"delay_s": 30.0}})
    assert cfg.path is not None
    a = OsirisProcess(cfg.path).start()
    try:
        call = asyncio.ensure_future(bus.request(SLOW_WORK, {"n": 1}, timeout=8, retry=False))
        await _in_flight(bus, 1, replicas=1)
        a.kill()
        with pytest.raises(ServiceError) as err:
            await call
        assert err.value.code == 504
    finally:
        a.kill()


async def test_the_retry_elsewhere_decision_reads_the_header_never_the_body_text(
    nats_url: str, bus: Bus
) -> None:
    """A replica says "another may serve this" with a header; the body's wording (another
    client's JSON layout, or a body that merely mentions the flag) decides nothing."""
    nc = await nats.connect(nats_url)  # two hand-made replicas, no osiris on this side
    attempts: dict[str, list[str]] = {"a": [], "b": []}

    def error(text: str) -> dict[str, str]:
        return {ERROR_CODE_HEADER: "503", ERROR_HEADER: text}

    async def cut_off_then_served(msg: Msg) -> None:
        attempts["a"].append((msg.headers or {}).get(ATTEMPT_HEADER, "1"))
        if len(attempts["a"]) == 1:
            await nc.publish(msg.reply, b'{"error": "cut off", "code": 503}',
                             headers={**error("cut off"), RETRY_ELSEWHERE_HEADER: "1"})
        else:
            await nc.publish(msg.reply, b'{"ok": true}')

    async def busy(msg: Msg) -> None:
        attempts["b"].append((msg.headers or {}).get(ATTEMPT_HEADER, "1"))
        await nc.publish(msg.reply, b'{"error":"busy","code":503,"detail":{"retry_elsewhere":true}}',
                         headers=error("busy"))

    try:
        await nc.subscribe("test.elsewhere.a", cb=cut_off_then_served)
        await nc.subscribe("test.elsewhere.b", cb=busy)
        await nc.flush()
        assert await bus.request("test.elsewhere.a", {}, retry=True, timeout=10) == {"ok": True}
        assert attempts["a"] == ["1", "2"]
        with pytest.raises(Unavailable) as err:
            await bus.request("test.elsewhere.b", {}, retry=True, timeout=10)
        assert attempts["b"] == ["1"] and err.value.message == "busy"
    finally:
        await nc.close()


async def test_an_error_that_another_replica_may_serve_says_so_in_a_header_and_the_body(
    nats_url: str,
) -> None:
    nc = await nats.connect(nats_url)
    try:
        inbox = nc.new_inbox()
        sub = await nc.subscribe(inbox)
        await respond_error(nc, Msg(nc, subject="x", reply=inbox),
                            Unavailable("slow is shutting down", retry_elsewhere=True))
        msg = await sub.next_msg(timeout=5)
        assert msg.headers is not None and msg.headers[RETRY_ELSEWHERE_HEADER] == "1"
        assert msgspec.json.decode(msg.data)["detail"] == {"retry_elsewhere": True}
        with pytest.raises(Unavailable) as err:
            raise_for_error(msg)
        assert err.value.retry_elsewhere
    finally:
        await nc.close()
