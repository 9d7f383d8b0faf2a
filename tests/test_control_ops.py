"""Control ops are Structs sent with one call; the wire stays `{"op": name, "args": {...}}`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import nats
import pytest
from osiris_testplugins.slow import DelayArgs, DelayResult, SetDelayOp

from osiris_core import Actor, Config, InvalidField, control_op
from osiris_core.nats.bus import Bus
from osiris_core.protocol import (
    ControlOp,
    ControlRequest,
    NoResult,
    PauseArgs,
    PauseOp,
    PauseResult,
    RestartOp,
    RestartResult,
    ResumeOp,
    ResumeResult,
    StatusOp,
)


async def test_pause_resume_and_restart_answer_typed_results(
    osiris_config: Callable[..., Config], osiris_runtime: Any, bus: Bus
) -> None:
    async with osiris_runtime(osiris_config(plugins=["example"])):
        paused = await bus.control("example", PauseOp(args=PauseArgs(timeout=5)))
        assert paused.status.state == "paused"
        assert isinstance(paused.result, PauseResult) and not paused.result.already
        assert paused.result.pause_s is not None and paused.result.pause_s >= 0
        again = await bus.control("example", PauseOp())
        assert again.result == PauseResult(already=True)
        resumed = await bus.control("example", ResumeOp())
        assert isinstance(resumed.result, ResumeResult) and resumed.result.resume_s is not None
        assert (await bus.control("example", ResumeOp())).result == ResumeResult(already=True)
        restarted = await bus.control("example", RestartOp(), timeout=10)
        assert restarted.result == RestartResult(state="running")
        assert (await bus.control("example", StatusOp())).result == NoResult()


async def test_a_plain_nats_client_sending_the_old_dicts_gets_the_same_replies(
    osiris_config: Callable[..., Config], osiris_runtime: Any, nats_url: str
) -> None:
    async with osiris_runtime(osiris_config(plugins=["slow"])):
        plain = await nats.connect(nats_url)  # no osiris on this side
        try:
            async def ask(payload: bytes) -> Any:
                msg = await plain.request("osiris.slow.control", payload, timeout=10)
                return msgspec.json.decode(msg.data)

            assert (await ask(b'{"op": "status"}'))["result"] == {}
            assert (await ask(b""))["status"]["name"] == "slow"
            paused = await ask(b'{"op": "pause", "args": {"force": false, "timeout": 5}}')
            assert list(paused["result"]) == ["pause_s"]  # no "already": false added
            assert (await ask(b'{"op": "pause"}'))["result"] == {"already": True}
            assert (await ask(b'{"op": "resume"}'))["status"]["state"] == "running"
            delay = await ask(b'{"op": "set_delay", "args": {"delay_s": 0.01}}')
            assert delay["result"] == {"before": 0.5, "delay_s": 0.01}
            assert (await ask(b'{"op": "peak"}'))["result"] == {"peak": 0}
        finally:
            await plain.close()


async def test_an_actors_declared_op_decodes_its_args_and_answers_its_result_type(
    osiris_config: Callable[..., Config], osiris_runtime: Any, bus: Bus
) -> None:
    async with osiris_runtime(osiris_config(plugins=["slow"])):
        reply = await bus.control("slow", SetDelayOp(args=DelayArgs(delay_s=0.0)))
        assert reply.result == DelayResult(before=0.5, delay_s=0.0)
        with pytest.raises(InvalidField) as err:  # refused at decode time, the field named
            await bus.request("osiris.slow.control",
                              {"op": "set_delay", "args": {"delay_s": -1}})
        assert err.value.field == "args.delay_s"


async def test_ops_nobody_declared_still_reach_on_control_and_decode_as_asked(
    osiris_config: Callable[..., Config], osiris_runtime: Any, bus: Bus
) -> None:
    class Peak(msgspec.Struct):
        peak: int

    async with osiris_runtime(osiris_config(plugins=["slow"])):
        assert (await bus.control("slow", ControlRequest(op="peak"))).result == {"peak": 0}
        typed = await bus.control("slow", ControlRequest(op="peak"), result_type=Peak)
        assert typed.result == Peak(peak=0)


class MyPause(ControlOp[NoResult], tag="pause"):
    pass


class Clash(Actor[Any]):
    name = "clash"

    @control_op
    async def pause_it(self, op: MyPause) -> NoResult:
        return NoResult()


def test_an_op_named_like_a_core_op_is_refused_when_the_actor_is_collected() -> None:
    with pytest.raises(TypeError, match="'pause' is already served"):
        Clash.control_specs()
