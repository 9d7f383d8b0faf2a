"""`GET /debug/prof`: only with ENABLE_PROFILING, only with the admin key, a real profile of
the gateway's own process (here: the test process, whose loop serves the gateway)."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest
from osiris_gateway.controllers.debug import profiling_enabled

from .conftest import client


def spin_in_gateway_thread(stop: threading.Event) -> None:
    """A busy worker thread of the gateway's process: its frame must show up."""
    n = 0
    while not stop.is_set():
        n = (n * 31 + 7) % 1_000_003


def test_enable_profiling_reads_like_the_seeds() -> None:
    assert profiling_enabled({"ENABLE_PROFILING": "true"})
    assert profiling_enabled({"ENABLE_PROFILING": "1"})
    assert not profiling_enabled({"ENABLE_PROFILING": "false"})
    assert not profiling_enabled({})


async def test_debug_prof_is_404_without_enable_profiling(gateway, nats_url,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ENABLE_PROFILING", raising=False)
    async with gateway(nats_url, admin_key="root") as url, client(url) as c:
        r = await c.get("/debug/prof?seconds=0.1", headers={"X-Admin-Key": "root"})
        assert r.status_code == 404


async def test_debug_prof_needs_the_admin_key_and_profiles_every_thread(
        gateway, nats_url, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENABLE_PROFILING", "true")
    async with gateway(nats_url) as url, client(url) as c:  # no admin key configured
        r = await c.get("/debug/prof?seconds=0.1")
        assert r.status_code == 403 and "admin_key" in r.json()["error"]
    async with gateway(nats_url, api_key="user", admin_key="root") as url, client(url) as c:
        assert (await c.get("/debug/prof?seconds=0.1")).status_code == 401
        user = {"Authorization": "Bearer user"}
        assert (await c.get("/debug/prof?seconds=0.1", headers=user)).status_code == 403
        admin = {**user, "X-Admin-Key": "root"}
        r = await c.get("/debug/prof?seconds=61", headers=admin)
        assert r.status_code == 422 and "seconds" in r.text

        stop = threading.Event()
        spinner = threading.Thread(target=spin_in_gateway_thread, args=(stop,), daemon=True)
        spinner.start()
        try:
            t0 = time.monotonic()
            first = asyncio.ensure_future(c.get("/debug/prof?seconds=1&format=html",
                                                headers=admin))
            await asyncio.sleep(0.3)
            busy = await c.get("/debug/prof?seconds=0.2", headers=admin)
            page = await first
            assert busy.status_code == 409 and "already running" in busy.json()["error"]
            assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
            assert "spin_in_gateway_thread" in page.text
            assert time.monotonic() - t0 < 10
            r = await c.get("/debug/prof?seconds=0.3&format=speedscope", headers=admin)
        finally:
            stop.set()
            spinner.join()
        assert r.status_code == 200 and "attachment" in r.headers["content-disposition"]
        doc = json.loads(r.content)
        assert doc["$schema"] == "https://www.speedscope.app/file-format-schema.json"
        names = {f["name"] for f in doc["shared"]["frames"]}
        assert "spin_in_gateway_thread" in names
        assert all(p["type"] == "sampled" for p in doc["profiles"])
