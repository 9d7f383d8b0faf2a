"""SIGTERM drains: in-flight requests are answered, then the process exits 0."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

from osiris_core import Config
from osiris_core.nats.bus import Bus
from osiris_core.protocol import ControlReply
from osiris_core.testing import OsirisProcess


async def test_sigterm_answers_all_50_in_flight_requests_and_exits_0(
    osiris_config: Callable[..., Config], bus: Bus
) -> None:
    cfg = osiris_config(plugins=["slow"], tables={"slow": {"delay_s": 1.5}})
    assert cfg.path is not None
    proc = OsirisProcess(cfg.path).start()
    try:
        calls = [asyncio.ensure_future(bus.request("test.slow.work", {"n": i}, timeout=30))
                 for i in range(50)]
        for _ in range(200):
            st = await bus.request("osiris.slow.control", {"op": "status"},
                                   reply_type=ControlReply)
            if st.status.in_flight == 50:
                break
            await asyncio.sleep(0.02)
        assert st.status.in_flight == 50
        proc.signal(signal.SIGTERM)
        replies = await asyncio.gather(*calls)
        assert sorted(r["n"] for r in replies) == list(range(50))
        code = await asyncio.get_running_loop().run_in_executor(None, proc.wait, 30)
        assert code == 0, proc.output()
        assert "slow: stopping → stopped" in proc.output()
    finally:
        proc.kill()


async def test_a_request_sent_while_the_actor_starts_is_answered_once_it_has_loaded(
    osiris_config: Callable[..., Config], bus: Bus
) -> None:
    cfg = osiris_config(plugins=["slow"], tables={"slow": {"delay_s": 0.01,
                                                            "start_delay_s": 3.0}})
    assert cfg.path is not None
    proc = OsirisProcess(cfg.path).start(wait_ready=False)
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while True:  # the moment the replica exists (its model still loading)
            reply = await bus._starting("test.slow.work")
            if reply is not None:
                break
            assert loop.time() < deadline and proc.proc and proc.proc.poll() is None
            await asyncio.sleep(0.02)
        assert reply.actor == "slow" and reply.wait_s == 30.0
        t0 = loop.time()
        got = await bus.request("test.slow.work", {"n": 7}, timeout=30)
        assert got["n"] == 7 and loop.time() - t0 > 0.5  # it waited for on_start, no 503
        assert "osiris: ready" in proc.output()
    finally:
        proc.signal(signal.SIGTERM)
        await asyncio.get_running_loop().run_in_executor(None, proc.wait, 30)
        proc.kill()
