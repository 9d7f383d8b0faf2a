"""The request contracts carry their bounds: a value out of range fails at decode, naming the
field, before any actor or engine sees it (and the gateway's HTTP bodies share the bounds)."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from osiris_contracts.messages import (
    MAX_EXAGGERATION,
    MAX_NEW_TOKENS,
    MAX_PROMPT_CHARS,
    MAX_SPEECH_CHARS,
    MAX_TEMPERATURE,
    GenerateRequest,
    ProposeRequest,
    StoreQuery,
    TtsRequest,
)
from osiris_core.config import validation_error_field

GEN = {"prompt": "hi"}
SPEAK = {"text": "hi"}
QUERY = {"table": "feedback"}

BAD: list[tuple[type[Any], dict[str, Any], str]] = [
    (GenerateRequest, {**GEN, "temperature": -5, "top_p": 7}, "temperature"),
    (GenerateRequest, {**GEN, "temperature": -0.01}, "temperature"),
    (GenerateRequest, {**GEN, "temperature": MAX_TEMPERATURE + 0.5}, "temperature"),
    (GenerateRequest, {**GEN, "top_p": 7}, "top_p"),
    (GenerateRequest, {**GEN, "top_p": 0}, "top_p"),
    (GenerateRequest, {**GEN, "top_p": -0.5}, "top_p"),
    (GenerateRequest, {**GEN, "max_length": 0}, "max_length"),
    (GenerateRequest, {**GEN, "max_length": -3}, "max_length"),
    (GenerateRequest, {**GEN, "max_length": MAX_NEW_TOKENS + 1}, "max_length"),
    (GenerateRequest, {"prompt": ""}, "prompt"),
    (GenerateRequest, {"prompt": "x" * (MAX_PROMPT_CHARS + 1)}, "prompt"),
    (GenerateRequest, {**GEN, "stop": ["s"] * 17}, "stop"),
    (GenerateRequest, {**GEN, "stop": ["x" * 257]}, "stop[0]"),
    (ProposeRequest, {"prompt": "p", "max_length": 0}, "max_length"),
    (ProposeRequest, {"prompt": ""}, "prompt"),
    (TtsRequest, {**SPEAK, "exaggeration": -0.1}, "exaggeration"),
    (TtsRequest, {**SPEAK, "exaggeration": MAX_EXAGGERATION + 0.1}, "exaggeration"),
    (TtsRequest, {"text": "x" * (MAX_SPEECH_CHARS + 1)}, "text"),
    (TtsRequest, {**SPEAK, "utterance_id": "a b/c"}, "utterance_id"),
    (TtsRequest, {**SPEAK, "utterance_id": ""}, "utterance_id"),
    (StoreQuery, {**QUERY, "limit": 0}, "limit"),
    (StoreQuery, {**QUERY, "limit": -1}, "limit"),
]

GOOD: list[tuple[type[Any], dict[str, Any]]] = [
    (GenerateRequest, GEN),
    (GenerateRequest, {**GEN, "temperature": 0, "top_p": 1, "max_length": 1}),
    (GenerateRequest, {**GEN, "temperature": MAX_TEMPERATURE, "top_p": 1e-6,
                       "max_length": MAX_NEW_TOKENS, "stop": ["\n"] * 16}),
    (ProposeRequest, {"prompt": "p", "max_length": 256}),
    (TtsRequest, {**SPEAK, "exaggeration": 0, "utterance_id": "u-1.a:b_c"}),
    (TtsRequest, {**SPEAK, "exaggeration": MAX_EXAGGERATION}),
    (StoreQuery, {**QUERY, "limit": 1}),
]


@pytest.mark.parametrize(("tp", "body", "field"), BAD,
                         ids=[f"{t.__name__}-{f}-{i}" for i, (t, _, f) in enumerate(BAD)])
def test_an_out_of_range_field_fails_at_decode_naming_it(tp: type[Any], body: dict[str, Any],
                                                         field: str) -> None:
    with pytest.raises(msgspec.ValidationError) as e:
        msgspec.json.decode(msgspec.json.encode(body), type=tp)
    assert validation_error_field(e.value)[0] == field


@pytest.mark.parametrize(("tp", "body"), GOOD)
def test_values_at_the_bounds_are_accepted(tp: type[Any], body: dict[str, Any]) -> None:
    msgspec.json.decode(msgspec.json.encode(body), type=tp)


def test_the_gateway_bodies_refuse_what_the_bus_refuses() -> None:
    schemas = pytest.importorskip("osiris_gateway.schemas")
    voice = pytest.importorskip("osiris_gateway.controllers.voice")
    for tp, body, field in BAD:
        if tp is GenerateRequest and field != "max_length":  # the HTTP cap is narrower
            http = schemas.ModelBody
        elif tp is TtsRequest:
            http = voice.SpeakBody
        else:
            continue
        with pytest.raises(msgspec.ValidationError) as e:
            msgspec.json.decode(msgspec.json.encode(body), type=http)
        assert validation_error_field(e.value)[0] == field, body
    chat = {"model": "hermes", "messages": [{"role": "user", "content": "x"}]}
    for knob, value in (("temperature", -1), ("top_p", 0), ("top_p", 1.5),
                        ("temperature", MAX_TEMPERATURE + 1), ("stop", ["s"] * 17)):
        with pytest.raises(msgspec.ValidationError) as e:
            msgspec.json.decode(msgspec.json.encode({**chat, knob: value}),
                                type=schemas.ChatRequest)
        assert validation_error_field(e.value)[0] == knob
