"""The hardened edge against real actors: auth, admin key, body cap, rate limit, timeouts,
error mapping, trailing slashes, metrics."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from litestar import Request, post
from litestar.params import JSONBody
from osiris_gateway.security import TokenBuckets

from osiris_core.protocol import CancelRequest
from osiris_core.subjects import REQUEST_ID_HEADER, cancel

from .conftest import client, wait_for


class SlowBody(msgspec.Struct):
    n: int


@post("/test/slow", status_code=200)
async def slow_route(request: Request[Any, Any, Any], data: JSONBody[SlowBody]) -> dict[str, Any]:
    """Maps to the slow test actor, as a plugin's route would."""
    result: dict[str, Any] = await request.app.state.gw.call(
        request, "slow", "test.slow.work", {"n": data.n}, timeout=0.3)
    return result


async def test_api_key_required_everywhere_but_health(gateway, nats_url, osiris_config,
                                                      osiris_runtime) -> None:
    async with osiris_runtime(osiris_config(["example"])), \
            gateway(nats_url, api_key="k-123") as url, client(url) as c:
        assert (await c.get("/health")).status_code == 200
        for path in ("/v1/models", "/actors/example", "/metrics", "/schema/openapi.json"):
            r = await c.get(path)
            assert r.status_code == 401, path
            assert r.headers["www-authenticate"].startswith("Bearer")
            err = r.json()["error"]
            assert "API key" in (err["message"] if path.startswith("/v1/") else err)
        r = await c.post("/generate/", json={"prompt": "x"})
        assert r.status_code == 401
        assert (await c.get("/actors/example", headers={"Authorization": "Bearer nope"})).status_code == 401
        ok = await c.get("/actors/example", headers={"Authorization": "Bearer k-123"})
        assert ok.status_code == 200 and ok.json()["status"]["state"] == "running"
        assert (await c.get("/v1/models", headers={"X-API-Key": "k-123"})).status_code == 200
        assert (await c.get("/v1/models?api_key=k-123")).status_code == 200  # EventSource


async def test_control_needs_admin_key(gateway, nats_url, osiris_config, osiris_runtime) -> None:
    async with osiris_runtime(osiris_config(["example"])):
        async with gateway(nats_url) as url, client(url) as c:
            r = await c.post("/actors/example/pause")
            assert r.status_code == 403 and "admin_key" in r.json()["error"]
        async with gateway(nats_url, api_key="user", admin_key="root") as url, client(url) as c:
            user = {"Authorization": "Bearer user"}
            assert (await c.post("/actors/example/pause", headers=user)).status_code == 403
            r = await c.post("/actors/example/pause", headers={**user, "X-Admin-Key": "root"})
            assert r.status_code == 200, r.text
            assert r.json()["status"]["state"] == "paused"
            r = await c.post("/actors/example/resume/", headers={"Authorization": "Bearer root"})
            assert r.status_code == 200 and r.json()["status"]["state"] == "running"
            r = await c.post("/actors/nobody/pause", headers={"X-Admin-Key": "root", **user})
            assert r.status_code == 404 and r.json()["error"] == "no live actor named 'nobody'"
            r = await c.post("/actors/a.%3E/pause", headers={"X-Admin-Key": "root", **user})
            assert r.status_code == 400 and r.json()["field"] == "name"


async def test_body_cap_413(gateway, nats_url) -> None:
    async with gateway(nats_url, max_body_bytes=1024) as url, client(url) as c:
        r = await c.post("/generate/hermes/", json={"prompt": "x" * 2000})
        assert r.status_code == 413
        assert "too large" in r.json()["error"].lower()
        r = await c.post("/generate/hermes/", json={"prompt": "x" * 100})
        assert r.status_code == 503  # under the cap: reaches the bus (no hermes here)
    async with gateway(nats_url) as url, client(url) as c:  # default cap: 1 MB
        r = await c.post("/feedback/phi3/", content=b'{"transaction_id": "' + b"a" * (1 << 20) + b'"}',
                         headers={"content-type": "application/json"})
        assert r.status_code == 413


async def test_rate_limit_429_with_retry_after(gateway, nats_url) -> None:
    async with gateway(nats_url, rate_limit_per_s=0.5, rate_limit_burst=2) as url, client(url) as c:
        codes = [(await c.post("/generate/", json={"prompt": "hi"})).status_code for _ in range(3)]
        assert codes[:2] == [503, 503]  # allowed through (no model actor in this test)
        assert codes[2] == 429
        r = await c.post("/generate/phi3", json={"prompt": "hi"})
        assert r.status_code == 429
        assert int(r.headers["retry-after"]) >= 1
        assert r.json()["error"].startswith("Rate limit exceeded")
        assert (await c.get("/health")).status_code == 200  # not a generation route
        metrics = (await c.get("/metrics")).text
        assert 'osiris_gateway_rate_limited_total{route="/generate/phi3"}' in metrics


def test_token_bucket_refills() -> None:
    b = TokenBuckets(rate=2.0, burst=1)
    assert b.take("a", now=0.0) == 0.0
    assert b.take("a", now=0.1) > 0
    assert b.take("b", now=0.1) == 0.0  # per client
    assert b.take("a", now=0.6) == 0.0


async def test_actor_timeout_is_504_and_errors_map(gateway, nats_url, osiris_config,
                                                  osiris_runtime) -> None:
    cfg = osiris_config(["slow"], tables={"slow": {"delay_s": 2.0}})
    async with osiris_runtime(cfg), \
            gateway(nats_url, extra_routes=[slow_route]) as url, client(url) as c:
        r = await c.post("/test/slow", json={"n": 1})
        assert r.status_code == 504, r.text
        assert "no reply on test.slow.work" in r.json()["error"]
        metrics = (await c.get("/metrics")).text
        assert 'osiris_gateway_actor_errors_total{actor="slow",status="504"} 1.0' in metrics
        assert 'osiris_gateway_errors_total{route="/test/slow",status="504"} 1.0' in metrics


async def test_client_disconnect_cancels_the_wait(gateway, nats_url, osiris_config,
                                                  osiris_runtime, bus) -> None:
    """The gateway stops waiting, counts it, and tells the actor which request to drop."""
    cfg = osiris_config(["slow"], tables={"slow": {"delay_s": 5.0}})

    @post("/test/slow-long", status_code=200)
    async def slow_long(request: Request[Any, Any, Any], data: JSONBody[SlowBody]) -> Any:
        return await request.app.state.gw.call(request, "slow", "test.slow.work", {"n": 1},
                                               timeout=30)

    seen: list[str] = []
    cancels: list[bytes] = []

    async def spy(msg: Any) -> None:  # a plain (non-queue) subscriber sees every request
        seen.append(msg.headers[REQUEST_ID_HEADER])

    async def on_cancel(msg: Any) -> None:
        cancels.append(msg.data)

    await bus.nc.subscribe("test.slow.work", cb=spy)
    await bus.nc.subscribe(cancel("slow"), cb=on_cancel)
    async with osiris_runtime(cfg), gateway(nats_url, extra_routes=[slow_long]) as url, \
            client(url) as c, client(url) as watcher:
        task = asyncio.ensure_future(c.post("/test/slow-long", json={"n": 1}))

        async def actor_busy() -> bool:
            return (await watcher.get("/actors/slow")).json()["status"]["in_flight"] == 1

        await wait_for(actor_busy, 10)
        task.cancel()  # the client goes away mid-request
        await wait_for(lambda: _disconnected(watcher), 10)
        await wait_for(lambda: cancels, 10)
        assert msgspec.json.decode(cancels[0], type=CancelRequest).request_id == seen[0]


async def _disconnected(c: Any) -> bool:
    text = (await c.get("/metrics")).text
    return 'osiris_gateway_client_disconnects_total{actor="slow"} 1.0' in text


async def test_seed_errors_and_trailing_slashes(gateway, nats_url) -> None:
    async with gateway(nats_url) as url, client(url) as c:
        for path in ("/generate", "/generate/"):
            r = await c.post(path, json={"prompt": "hi", "model_id": "gpt"})
            assert r.status_code == 400
            assert r.json() == {"error": "Invalid model_id specified. Choose 'hermes' or 'phi3'.",
                                "specified_model_id": "gpt"}
        for path, msg in (("/generate/hermes", "Hermes model not loaded. Please check server logs."),
                          ("/generate/phi3/", "Phi-3 ONNX model not loaded. Please check server logs.")):
            r = await c.post(path, json={"prompt": "hi"})
            assert r.status_code == 503 and r.json()["error"] == msg
        r = await c.post("/generate/hermes/", json={"promt": "hi"})
        assert r.status_code == 422 and r.json()["field"] == "promt"
        r = await c.post("/generate/hermes/", json={"max_length": 5})
        assert r.status_code == 422 and r.json()["field"] == "prompt"
        r = await c.post("/generate/hermes/", json={"prompt": "x", "max_length": "long"})
        assert r.status_code == 422 and r.json()["field"] == "max_length"
        r = await c.post("/generate/hermes/", content=b'{"prompt":', headers={"content-type": "application/json"})
        assert r.status_code == 400 and r.json()["error"].startswith("Invalid JSON body")
        r = await c.post("/feedback/phi3", json={"transaction_id": "t", "feedback_type": "rating"})
        assert r.status_code == 503 and r.json()["detail"].startswith("Failed to store feedback. Error:")
        r = await c.post("/propose_trade_adjustments", json={"prompt": "p"})
        assert r.status_code == 503 and r.json()["error"]
        r = await c.post("/speak", json={"text": "hello"})
        assert r.status_code == 503
        for path in ("/health", "/health/"):
            assert (await c.get(path)).status_code == 200
        r = await c.post("/v1/chat/completions",
                         json={"model": "gpt-4", "messages": [{"role": "user", "content": "x"}]})
        assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error"


async def test_cors_off_unless_configured(gateway, nats_url) -> None:
    pre = {"Origin": "http://ui.example", "Access-Control-Request-Method": "POST"}
    async with gateway(nats_url) as url, client(url) as c:
        r = await c.get("/health", headers={"Origin": "http://ui.example"})
        assert "access-control-allow-origin" not in r.headers
    async with gateway(nats_url, cors_origins=["http://ui.example"]) as url, client(url) as c:
        r = await c.options("/generate/", headers=pre)
        assert r.headers["access-control-allow-origin"] == "http://ui.example"


def test_closed_by_default_and_keys_from_env(tmp_path, monkeypatch) -> None:
    from osiris_gateway.config import GatewayConfig

    from osiris_core.config import load_config

    cfg = GatewayConfig()
    assert (cfg.host, cfg.port, cfg.api_key, cfg.admin_key, cfg.cors_origins,
            cfg.max_body_bytes) == ("127.0.0.1", 8000, "", "", [], 1024 * 1024)
    path = tmp_path / "osiris.toml"
    path.write_text('[plugins.gateway]\napi_key = "from-file"\nport = 9001\n')
    monkeypatch.setenv("OSIRIS_API_KEY", "from-env")
    monkeypatch.setenv("OSIRIS_ADMIN_KEY", "admin-env")
    gw = load_config(path).plugin("gateway", GatewayConfig)
    assert (gw.api_key, gw.admin_key, gw.port) == ("from-env", "admin-env", 9001)
