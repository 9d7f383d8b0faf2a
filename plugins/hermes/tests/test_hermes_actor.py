"""hermes on the real loaders with the tiny models: fp and GPTQ, streaming, adapters, pause."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import msgspec
import pytest

from osiris_contracts.messages import GenerateChunk, GenerateReply
from osiris_contracts.subjects import HERMES_GENERATE
from osiris_core.errors import BadRequest, ServiceError, Unavailable
from osiris_core.protocol import ControlReply
from osiris_core.subjects import control

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning",
                               "ignore::UserWarning"),
]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
PROMPT = "Assess this proposal: AAPL LONG, stop 3%, target 9%."


def _cfg(osiris_config: Any, model: Path | str, name: str = "osiris.toml", **extra: Any) -> Any:
    return osiris_config(plugins=["hermes"], name=name, tables={"hermes": {"model": str(model),
                                                                "device": "cpu", **extra}})


async def _ctl(bus: Any, op: str, **args: Any) -> ControlReply:
    return await bus.request(control("hermes"), {"op": op, "args": args},
                             reply_type=ControlReply, timeout=60)


async def _gen(bus: Any, prompt: str = PROMPT, **kw: Any) -> GenerateReply:
    return await bus.request(HERMES_GENERATE, {"prompt": prompt, "max_length": 24, **kw},
                             reply_type=GenerateReply, timeout=60)


async def test_generates_and_streams_the_same_text(tiny_models, osiris_config, osiris_runtime, bus):
    async with osiris_runtime(_cfg(osiris_config, tiny_models / "hermes")):
        reply = await _gen(bus)
        assert reply.usage and reply.usage["completion_tokens"] == 24
        assert reply.generated_text.strip()
        chunks = [c async for c in bus.stream(HERMES_GENERATE, {"prompt": PROMPT, "max_length": 24,
                                                                "stream": True},
                                              item_type=GenerateChunk, timeout=60)]
        assert chunks[-1].done and chunks[-1].usage == reply.usage
        assert [c.index for c in chunks] == list(range(len(chunks)))
        assert len(chunks) > 3  # really token by token, not one blob
        assert "".join(c.text for c in chunks) == reply.generated_text
        assert chunks[-1].generated_text == reply.generated_text

        facts = (await _ctl(bus, "status")).status.facts
        assert facts["loaded"] is True and facts["device"] == "cpu"
        assert facts["model_file_exists"] is True and facts["bytes_resident"] > 0


async def test_stop_strings_cut_the_text_in_both_modes(tiny_models, osiris_config, osiris_runtime, bus):
    async with osiris_runtime(_cfg(osiris_config, tiny_models / "hermes")):
        full = (await _gen(bus, max_length=40)).generated_text
        stop = full[len(full) // 2: len(full) // 2 + 2]
        assert stop.strip(), full
        cut = (await _gen(bus, max_length=40, stop=[stop])).generated_text
        assert cut == full[: full.index(stop)]
        chunks = [c async for c in bus.stream(
            HERMES_GENERATE, {"prompt": PROMPT, "max_length": 40, "stop": [stop], "stream": True},
            item_type=GenerateChunk, timeout=60)]
        assert "".join(c.text for c in chunks) == cut


async def test_gptq_checkpoint_loads_through_the_same_loader(tiny_models, osiris_config,
                                                             osiris_runtime, bus):
    async with osiris_runtime(_cfg(osiris_config, tiny_models / "hermes-gptq")):
        facts = (await _ctl(bus, "status")).status.facts
        assert facts["loaded"] is True, facts
        assert facts["quantization"] == "gptq"
        reply = await _gen(bus)
        assert reply.usage and reply.usage["completion_tokens"] > 0
        chunks = [c async for c in bus.stream(HERMES_GENERATE, {"prompt": PROMPT, "max_length": 24,
                                                                "stream": True},
                                              item_type=GenerateChunk, timeout=60)]
        assert "".join(c.text for c in chunks) == reply.generated_text


async def test_adapters_switch_without_reloading_the_base(tiny_models, osiris_config, osiris_runtime,
                                                         bus):
    adapters = tiny_models / "hermes-adapters"
    async with osiris_runtime(_cfg(osiris_config, tiny_models / "hermes")):
        base = (await _gen(bus)).generated_text
        load_s = (await _ctl(bus, "status")).status.facts["load_s"]
        r = await _ctl(bus, "load_adapter", name="a", path=str(adapters / "a"))
        assert r.status.facts["adapter"] == "a"
        with_a = (await _gen(bus)).generated_text
        await _ctl(bus, "load_adapter", name="b", path=str(adapters / "b"))
        with_b = (await _gen(bus)).generated_text
        assert len({base, with_a, with_b}) == 3
        await _ctl(bus, "set_adapter", name="a")
        assert (await _gen(bus)).generated_text == with_a
        await _ctl(bus, "set_adapter", name=None)
        assert (await _gen(bus)).generated_text == base
        await _ctl(bus, "unload_adapter", name="a")
        await _ctl(bus, "unload_adapter", name="b")
        facts = (await _ctl(bus, "status")).status.facts
        assert facts["adapters"] == [] and facts["load_s"] == load_s  # never reloaded
        assert (await _gen(bus)).generated_text == base
        with pytest.raises(BadRequest) as e:
            await _ctl(bus, "load_adapter", name="x", path=str(tiny_models / "hermes"))
        assert "adapter_config.json" in str(e.value)


async def test_request_during_pause_is_served_after_resume(tiny_models, osiris_config,
                                                           osiris_runtime, bus):
    async with osiris_runtime(_cfg(osiris_config, tiny_models / "hermes")):
        before = (await _gen(bus)).generated_text
        paused = await _ctl(bus, "pause")
        assert paused.status.state == "paused"
        assert "pause_s" in paused.result
        assert paused.status.facts["bytes_resident"] == 0
        assert paused.status.facts["released_bytes"] > 0
        pending = [asyncio.create_task(_gen(bus)) for _ in range(3)]
        done, _ = await asyncio.wait(pending, timeout=0.3)
        assert not done  # waiting, not dropped and not answered from a released model
        resumed = await _ctl(bus, "resume")
        assert resumed.status.state == "running" and "resume_s" in resumed.result
        replies = await asyncio.wait_for(asyncio.gather(*pending), 60)
        assert [r.generated_text for r in replies] == [before] * 3


async def test_paused_too_long_gets_the_documented_error(tiny_models, osiris_config,
                                                         osiris_runtime, bus):
    cfg = _cfg(osiris_config, tiny_models / "hermes", request_wait_s=0.2)
    async with osiris_runtime(cfg):
        await _ctl(bus, "pause")
        with pytest.raises(Unavailable) as e:
            await _gen(bus)
        assert "paused" in str(e.value)
        await _ctl(bus, "resume")
        assert (await _gen(bus)).generated_text


async def test_clear_errors_and_the_actor_keeps_serving(tmp_path, tiny_models, osiris_config,
                                                        osiris_runtime, bus):
    missing = tmp_path / "nope"
    async with osiris_runtime(_cfg(osiris_config, missing)):
        with pytest.raises(Unavailable) as e:
            await _gen(bus)
        assert str(missing) in str(e.value) and "osiris models tiny" in str(e.value)
        facts = (await _ctl(bus, "status")).status.facts
        assert facts["loaded"] is False and facts["model_file_exists"] is False
        with pytest.raises(Unavailable) as e:
            await bus.request(HERMES_GENERATE, {"prompt": "x"}, timeout=10)
        assert "not found" in str(e.value)

    async with osiris_runtime(_cfg(osiris_config, tiny_models / "phi3-onnx", name="b.toml")):
        with pytest.raises(Unavailable) as e:
            await _gen(bus)
        assert "wrong model format" in str(e.value) and "GenAI" in str(e.value)

    async with osiris_runtime(_cfg(osiris_config, tiny_models / "hermes", max_prompt_tokens=8,
                                   name="c.toml")):
        with pytest.raises(BadRequest) as e:
            await _gen(bus)
        assert e.value.field == "prompt" and "too long" in str(e.value)
        with pytest.raises(ServiceError) as e:  # refused by the contract at decode (4xx)
            await bus.request(HERMES_GENERATE, {"prompt": "hi", "max_length": 0}, timeout=10)
        assert e.value.field == "max_length" and 400 <= e.value.code < 500
        with pytest.raises(ServiceError) as e:
            await bus.request(HERMES_GENERATE, {"prompt": "hi", "bogus": 1}, timeout=10)
        assert "bogus" in str(e.value) and 400 <= e.value.code < 500


async def test_a_tiny_temperature_is_greedy_not_a_crash(tiny_models, osiris_config,
                                                        osiris_runtime, bus):
    async with osiris_runtime(_cfg(osiris_config, tiny_models / "hermes")):
        greedy = await _gen(bus)
        for t in (1e-6, 0.001):
            assert (await _gen(bus, temperature=t)).generated_text == greedy.generated_text


async def test_cancel_notice_stops_a_running_generation(tiny_models, osiris_config,
                                                        osiris_runtime, bus):
    from osiris_core.subjects import REQUEST_ID_HEADER, cancel

    async with osiris_runtime(_cfg(osiris_config, tiny_models / "hermes")):
        # a raw publish has none of Bus.request's grace for a service still coming up (a
        # no-responders status would be the first message): wait until hermes answers
        await bus.request(HERMES_GENERATE, {"prompt": "hi", "max_length": 1}, timeout=60)
        inbox = bus.nc.new_inbox()
        sub = await bus.nc.subscribe(inbox)
        await bus.nc.publish(str(HERMES_GENERATE), msgspec.json.encode(
            {"prompt": PROMPT, "max_length": 2000, "stream": True}), reply=inbox,
            headers={REQUEST_ID_HEADER: "r-1"})
        first = msgspec.json.decode((await sub.next_msg(timeout=60)).data, type=GenerateChunk)
        assert not first.done
        await bus.publish(cancel("hermes"), {"request_id": "r-1"})
        while True:
            chunk = msgspec.json.decode((await sub.next_msg(timeout=60)).data,
                                        type=GenerateChunk)
            if chunk.done:
                break
        assert chunk.usage is not None and chunk.usage["completion_tokens"] < 2000
        assert (await _ctl(bus, "status")).status.facts["cancelled"] == 1
