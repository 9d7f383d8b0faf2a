"""A plugin's route reaches the bus: the example plugin's `POST /example/echo`, mounted by the
gateway through `register_routes`, as docs/plugins.md shows it."""

from __future__ import annotations

from .conftest import client


async def test_example_route_reaches_the_actor_and_maps_its_errors(
    gateway, nats_url, osiris_config, osiris_runtime
) -> None:
    async with gateway(nats_url, plugins=["example"]) as url, client(url) as c:
        r = await c.post("/example/echo", json={"text": "hi", "upper": True})
        assert r.status_code == 503  # no example actor yet: Unavailable → 503
        async with osiris_runtime(osiris_config(["example"])):
            r = await c.post("/example/echo", json={"text": "hi", "upper": True})
            assert r.status_code == 200, r.text
            assert r.json()["text"] == "HI" and r.json()["node"]
            bad = await c.post("/example/echo", json={"text": 5})
            assert bad.status_code == 422  # the request Struct is validated at the edge
        paths = (await c.get("/schema/openapi.json")).json()["paths"]
        assert "/example/echo" in paths
