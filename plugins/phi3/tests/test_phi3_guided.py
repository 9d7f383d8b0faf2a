"""`osiris.phi3.guided` on the tiny model through the real actor and NATS: the caller's Lark
grammar, JSON schema or regex constrains the text, a seed makes sampling repeatable, and a
grammar that does not compile (or is too large) is the caller's 400 while phi3 keeps serving."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import msgspec
import pytest
from osiris_phi3 import PHI3_GUIDED
from osiris_phi3.contracts import GuidedReply

from osiris_core.errors import BadRequest
from osiris_core.protocol import ControlReply, StatusOp
from osiris_core.subjects import control

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning",
                               "ignore::UserWarning"),
]
os.environ.setdefault("HF_HUB_OFFLINE", "1")

PROMPT = "Edit the policy: the stop is too wide after two losing days.\n"
EDIT_GRAMMAR = r"""
start: "scale{" KEY "," FACTOR "}"
KEY: "stop_pct" | "target_pct" | "max_position"
FACTOR: /0\.[5-9][0-9]?|1\.[0-9][0-9]?/
"""
"""A one-operation edit language as the dgm will send it: the reply can only be one of these."""
EDIT = re.compile(r"scale\{(stop_pct|target_pct|max_position),(0\.[5-9][0-9]?|1\.[0-9][0-9]?)\}")

EDIT_SCHEMA = json.dumps({
    "type": "object",
    "properties": {"key": {"enum": ["stop_pct", "target_pct"]},
                   "factor": {"type": "number", "minimum": 0.5, "maximum": 2},
                   "why": {"type": "string", "maxLength": 40, "pattern": "^[a-z ]+$"}},
    "required": ["key", "factor", "why"], "additionalProperties": False,
    "x-guidance": {"whitespace_flexible": False},
})


class _Edit(msgspec.Struct, forbid_unknown_fields=True):
    key: str
    factor: float
    why: str


def _cfg(osiris_config: Any, tiny: Path, **extra: Any) -> Any:
    return osiris_config(plugins=["phi3"], tables={"phi3": {
        "model": str(tiny / "phi3-onnx"), "provider": "cpu", "few_shot": 0, **extra}})


async def _guided(bus: Any, grammar: str = EDIT_GRAMMAR, guidance: str = "lark_grammar",
                  **kw: Any) -> GuidedReply:
    body = {"prompt": PROMPT, "guidance": guidance, "grammar": grammar, "max_length": 64, **kw}
    return await bus.request(PHI3_GUIDED, body, reply_type=GuidedReply, timeout=60)


async def _status(bus: Any) -> Any:
    return (await bus.control("phi3", StatusOp(), timeout=30)).status


async def test_a_lark_grammar_a_json_schema_and_a_regex_constrain_what_phi3_writes(
        tiny_models, osiris_config, osiris_runtime, bus):
    async with osiris_runtime(_cfg(osiris_config, tiny_models)):
        replies = [await _guided(bus)] + [await _guided(bus, temperature=1.0, seed=s)
                                          for s in range(6)]
        for r in replies:  # greedy and sampled, every reply is a sentence of the grammar
            assert EDIT.fullmatch(r.generated_text), r.generated_text
            assert r.finish_reason == "stop" and r.adapter is None
            assert r.usage["completion_tokens"] == len(r.token_ids) <= 64
        assert len({r.generated_text for r in replies}) > 1  # sampling chose, not the grammar

        r = await _guided(bus, EDIT_SCHEMA, "json_schema", temperature=0.7, seed=3)
        edit = msgspec.json.decode(r.generated_text, type=_Edit)
        assert edit.key in ("stop_pct", "target_pct") and 0.5 <= edit.factor <= 2
        assert re.fullmatch("[a-z ]*", edit.why) and r.finish_reason == "stop"

        r = await _guided(bus, "(off|set)\\{[a-z_]{1,12}\\}", "regex")
        assert re.fullmatch(r"(off|set)\{[a-z_]{1,12}\}", r.generated_text)

        # max_length cuts a sentence the grammar has not finished, and says so
        r = await _guided(bus, max_length=2)
        assert r.finish_reason == "length" and len(r.token_ids) == 2
        assert r.generated_text and "scale{".startswith(r.generated_text)  # a grammar prefix

        # `system` wraps the prompt in the model's chat markup (the raw prompt is sent as is)
        raw = (await _guided(bus)).usage["prompt_tokens"]
        chat = await _guided(bus, system="You edit trading policies.")
        assert chat.usage["prompt_tokens"] > raw + 5 and EDIT.fullmatch(chat.generated_text)


async def test_the_same_seed_gives_the_same_text_and_greedy_ignores_the_seed(
        tiny_models, osiris_config, osiris_runtime, bus):
    free = "[a-z ]{1,48}"  # wide enough that sampling shows
    async with osiris_runtime(_cfg(osiris_config, tiny_models)):
        first = await _guided(bus, free, "regex", temperature=1.0, seed=7)
        again = await _guided(bus, free, "regex", temperature=1.0, seed=7)
        assert again.token_ids == first.token_ids and again.generated_text == first.generated_text
        others = {tuple((await _guided(bus, free, "regex", temperature=1.0, seed=s)).token_ids)
                  for s in (8, 9, 10)}
        assert others - {tuple(first.token_ids)}  # another seed, another sample
        greedy = {tuple((await _guided(bus, free, "regex", seed=s)).token_ids) for s in (1, 2)}
        assert len(greedy) == 1


async def test_the_live_adapter_generates_unless_the_request_names_base(
        tiny_models, osiris_config, osiris_runtime, bus):
    async with osiris_runtime(_cfg(osiris_config, tiny_models)):
        base = await _guided(bus, "[a-z ]{1,48}", "regex")
        await bus.request(control("phi3"), {"op": "load_adapter", "args": {
            "path": str(tiny_models / "phi3-adapters" / "a.onnx_adapter"), "name": "a"}},
            reply_type=ControlReply, timeout=60)
        live = await _guided(bus, "[a-z ]{1,48}", "regex")
        assert live.adapter == "a" and live.token_ids != base.token_ids
        named = await _guided(bus, "[a-z ]{1,48}", "regex", adapter="base")
        assert named.adapter is None and named.token_ids == base.token_ids
        with pytest.raises(BadRequest, match="unknown adapter 'nope'"):
            await _guided(bus, adapter="nope")


async def test_a_grammar_that_does_not_compile_is_a_400_naming_it_and_phi3_keeps_serving(
        tiny_models, osiris_config, osiris_runtime, bus):
    async with osiris_runtime(_cfg(osiris_config, tiny_models, max_grammar_chars=256)):
        bad = [("lark_grammar", 'start: "scale{" foo "}"\n', 'unknown name: "foo"'),
               ("lark_grammar", "start: (((\n", "Expected token"),
               ("regex", "[a-z", "unclosed character class"),
               ("json_schema", '{"type": "bogus"}', "Invalid type: bogus"),
               ("json_schema", "{not json", "key must be a string")]
        for guidance, grammar, compiler_says in bad:
            with pytest.raises(BadRequest) as e:
                await _guided(bus, grammar, guidance)
            assert e.value.code == 400 and e.value.field == "grammar"
            assert f"the {guidance} does not compile" in e.value.message
            assert compiler_says in e.value.message, e.value.message
            assert EDIT.fullmatch((await _guided(bus)).generated_text)  # the next one works

        with pytest.raises(BadRequest) as e:  # the size bound, checked before compiling
            await _guided(bus, EDIT_GRAMMAR + "// " + "x" * 300 + "\n")
        assert e.value.field == "grammar" and "max_grammar_chars" in e.value.message
        with pytest.raises(BadRequest) as e:  # the actor's cap on new tokens
            await _guided(bus, max_length=5000)
        assert e.value.field == "max_length"
        for field, value in (("temperature", -0.5), ("seed", 2**31), ("grammar", ""),
                             ("guidance", "xml")):
            with pytest.raises(BadRequest) as e:  # refused where the request is decoded
                await _guided(bus, **{field: value})
            assert field in e.value.message

        status = await _status(bus)
        assert status.state == "running" and status.restarts == 0
        assert EDIT.fullmatch((await _guided(bus, temperature=1.0, seed=1)).generated_text)
