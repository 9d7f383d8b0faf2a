"""Model routes against the real hermes actor on the tiny model, in-process: a paused model
answers the seeds' 503 once its wait runs out, and a gateway that stops waiting first answers
504; control goes through the admin routes."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import client, wait_for

pytestmark = [
    pytest.mark.slow,
    # transformers/peft deprecation noise inside the in-process hermes actor
    pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning",
                               "ignore::UserWarning"),
]
ADMIN = {"X-Admin-Key": "root"}


def _hermes(osiris_config, tiny_models: Path, **extra):  # type: ignore[no-untyped-def]
    return osiris_config(["hermes"], tables={"hermes": {"model": str(tiny_models / "hermes"),
                                                        **extra}})


async def test_paused_model_503_with_seed_message(tiny_models, gateway, nats_url, osiris_config,
                                                  osiris_runtime) -> None:
    async with osiris_runtime(_hermes(osiris_config, tiny_models, request_wait_s=0.2)), \
            gateway(nats_url, admin_key="root") as url, client(url) as c:
        r = await c.post("/generate/hermes/", json={"prompt": "hi", "max_length": 4})
        assert r.status_code == 200 and "generated_text" in r.json()
        r = await c.post("/actors/hermes/pause", headers=ADMIN)
        assert r.status_code == 200 and r.json()["status"]["state"] == "paused"
        health = (await c.get("/health")).json()
        hermes = next(a for a in health["actors"] if a["name"] == "hermes")
        assert hermes["state"] == "paused"
        r = await c.post("/generate/hermes/", json={"prompt": "hi", "max_length": 4})
        assert r.status_code == 503
        assert r.json()["error"] == "Hermes model not loaded. Please check server logs."
        assert "paused" in r.json()["detail"]
        r = await c.post("/actors/hermes/resume", headers=ADMIN)
        assert r.status_code == 200 and r.json()["status"]["state"] == "running"
        r = await c.post("/generate/", json={"prompt": "hi", "max_length": 4})
        assert r.status_code == 200


async def test_actor_slower_than_the_gateway_is_504(tiny_models, gateway, nats_url,
                                                   osiris_config, osiris_runtime) -> None:
    async with osiris_runtime(_hermes(osiris_config, tiny_models, request_wait_s=30)), \
            gateway(nats_url, admin_key="root", generate_timeout_s=0.5) as url, \
            client(url) as c:
        assert (await c.post("/actors/hermes/pause", headers=ADMIN)).status_code == 200
        r = await c.post("/generate/hermes", json={"prompt": "hi", "max_length": 4})
        assert r.status_code == 504
        assert r.json()["error"].startswith("hermes did not answer in time")
        r = await c.post("/v1/chat/completions", json={
            "model": "hermes", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 504 and r.json()["error"]["type"] == "timeout"
        r = await c.post("/actors/hermes/resume", headers=ADMIN)
        assert r.status_code == 200 and r.json()["status"]["state"] == "running"


async def test_adapter_routes_map_to_control(tiny_models, gateway, nats_url, osiris_config,
                                             osiris_runtime) -> None:
    adapters = sorted(p for p in (tiny_models / "hermes-adapters").iterdir() if p.is_dir())
    async with osiris_runtime(_hermes(osiris_config, tiny_models)), \
            gateway(nats_url, admin_key="root") as url, client(url) as c:
        r = await c.post("/actors/hermes/adapters", headers=ADMIN,
                         json={"name": "a1", "path": str(adapters[0])})  # a/b: PEFT dirs
        assert r.status_code == 200, r.text
        assert r.json()["result"]["adapter"] == "a1"

        async def health_shows_adapter() -> bool:
            actors = (await c.get("/health")).json()["actors"]
            return next(a for a in actors if a["name"] == "hermes")["adapter"] == "a1"

        await wait_for(health_shows_adapter, 5)
        r = await c.delete("/actors/hermes/adapters/a1", headers=ADMIN)
        assert r.status_code == 200
        r = await c.post("/actors/hermes/adapters", headers=ADMIN, json={"path": ""})
        assert r.status_code == 422 and r.json()["field"] == "path"
