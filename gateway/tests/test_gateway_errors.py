"""One OpenAI error shape for a response and for a stream's last event (the stream's used
to say "api_error" for everything and drop the field)."""

from __future__ import annotations

import msgspec
from osiris_gateway.errors import openai_error
from osiris_gateway.schemas import ErrorBody


def test_an_error_in_openai_shape_keeps_its_type_and_field() -> None:
    body = msgspec.to_builtins(openai_error(503, ErrorBody(error="hermes is not loaded")))
    assert body == {"error": {"message": "hermes is not loaded", "type": "service_unavailable",
                              "param": None, "code": "503"}}
    bad = openai_error(422, ErrorBody(error="too long", field="max_tokens")).error
    assert (bad.type, bad.param) == ("invalid_request_error", "max_tokens")
    assert openai_error(502, ErrorBody(error="x")).error.type == "api_error"
