"""HTTP bodies refuse the values the bus contracts refuse: a 422 naming the field, before
any request reaches an actor (none runs here: a body that got through would be a 503)."""

from __future__ import annotations

from typing import Any

from .conftest import client

BAD_GENERATE: list[tuple[dict[str, Any], str]] = [
    ({"prompt": "hi", "temperature": -5, "top_p": 7}, "temperature"),
    ({"prompt": "hi", "temperature": 50}, "temperature"),
    ({"prompt": "hi", "top_p": 7}, "top_p"),
    ({"prompt": "hi", "top_p": 0}, "top_p"),
    ({"prompt": "hi", "max_length": 0}, "max_length"),
    ({"prompt": "hi", "max_length": 5000}, "max_length"),
    ({"prompt": ""}, "prompt"),
    ({"prompt": "hi", "stop": ["x"] * 17}, "stop"),
]


async def test_out_of_range_bodies_are_a_422_naming_the_field(gateway, nats_url) -> None:
    async with gateway(nats_url, rate_limit_per_s=0) as url, client(url) as c:
        for path in ("/generate/", "/generate/hermes/", "/generate/phi3/"):
            for body, field in BAD_GENERATE:
                r = await c.post(path, json=body)
                assert r.status_code == 422, (path, body, r.text)
                assert r.json()["field"] == field, (path, body, r.json())
        for body, field in (({"text": "hi", "exaggeration": 7}, "exaggeration"),
                            ({"text": "hi", "exaggeration": -1}, "exaggeration"),
                            ({"text": "hi", "utterance_id": "a b"}, "utterance_id"),
                            ({"text": ""}, "text")):
            r = await c.post("/speak", json=body)
            assert r.status_code == 422 and r.json()["field"] == field, (body, r.text)
        chat = {"model": "hermes", "messages": [{"role": "user", "content": "x"}]}
        for knob, value in (("temperature", -1), ("top_p", 1.5), ("max_tokens", 0)):
            r = await c.post("/v1/chat/completions", json={**chat, knob: value})
            assert r.status_code == 422, (knob, r.text)
            assert r.json()["error"]["param"] == knob, (knob, r.json())
        # in range, the same bodies get as far as the (absent) actors
        r = await c.post("/generate/hermes/", json={"prompt": "hi", "temperature": 0.7,
                                                    "top_p": 0.9, "max_length": 16})
        assert r.status_code == 503
