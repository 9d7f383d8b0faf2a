"""The whole loop under `osiris nats-config`: each role a real `osiris run` process with its
own user, against a nats-server started with the generated file. A permission the code needs
and the file does not grant fails here (the server's refusal is logged by the process)."""

from __future__ import annotations

import asyncio
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from osiris_core.bus import Bus
from osiris_core.config import OsirisSettings, load_config
from osiris_core.connection import open_connection
from osiris_core.contracts import StoreQuery, StoreRows
from osiris_core.natsconfig import inbox_prefix, load_for, render, role_permissions
from osiris_core.natsserver import EmbeddedNats, free_port
from osiris_core.subjects import STORE_QUERY
from osiris_core.testing import OsirisProcess, write_config

pytestmark = pytest.mark.slow

# role → the plugins its process runs (the gpu, sim, bridge and dgm roles are exercised with
# plain clients in test_nats_config.py)
PROCESSES = {
    "models": ["hermes", "phi3"],
    "orchestrator": ["orchestrator"],
    "feedback": ["feedback"],
    "trainer": ["trainer"],
    "gateway": ["gateway"],
}


async def stored(url: str, password: str, tid: str) -> dict[str, int]:
    """Rows of `tid` in the feedback store, asked as the operator (as `osiris db` does)."""
    settings = OsirisSettings(nats_url=url, nats_user="operator", nats_password=password,
                              nats_inbox_prefix=inbox_prefix("operator"))
    bus = Bus(await open_connection(settings, name="test-operator"))
    try:
        async with asyncio.timeout(30):
            while True:
                found = {}
                for table in ("proposals", "feedback"):
                    got = await bus.request(STORE_QUERY, StoreQuery(table=table, limit=100),
                                            reply_type=StoreRows, timeout=10)
                    found[table] = sum(1 for row in got.rows
                                       if row.get("transaction_id") == tid)
                if all(found.values()):
                    return found
                await asyncio.sleep(0.2)
    finally:
        await bus.nc.close()


def test_the_whole_loop_runs_with_one_least_privilege_user_per_role(
        tmp_path: Path, tiny_models: Path) -> None:
    loaded, configs = load_for(load_config(None, search_cwd=False))
    perms = role_permissions(loaded, configs)
    passwords = {r: f"pw-{r}" for r in perms}
    port = free_port()
    tables: dict[str, dict[str, Any]] = {
        "gateway": {"port": port},
        "hermes": {"model": str(tiny_models / "hermes")},
        "phi3": {"model": str(tiny_models / "phi3-onnx")},
        "trainer": {"base_model": str(tiny_models / "phi3"), "schedule": ""},
    }
    env = {"HF_HUB_OFFLINE": "1", "OSIRIS_LOAD_PLUGINS": ",".join(
        p for ps in PROCESSES.values() for p in ps)}
    with EmbeddedNats(tmp_path / "nats", config=render(perms, passwords)) as srv, \
            ExitStack() as stack:
        procs: dict[str, OsirisProcess] = {}
        for role, plugins in PROCESSES.items():
            d = tmp_path / role
            d.mkdir()
            cfg = write_config(d / "osiris.toml", srv.url, plugins,
                               {p: tables[p] for p in plugins if p in tables},
                               nats_user=role, nats_password=passwords[role],
                               nats_inbox_prefix=inbox_prefix(role),
                               data_dir=str(tmp_path / "data" / role))
            procs[role] = OsirisProcess(cfg, env=env).start(wait_ready=False)
            stack.callback(procs[role].__exit__)
        deadline = time.monotonic() + 120  # all start at once: imports share the 2 cores
        for role, proc in procs.items():
            while "osiris: ready" not in proc.output():
                assert proc.proc is not None and proc.proc.poll() is None, proc.output()
                assert time.monotonic() < deadline, f"{role}: {proc.output()[-3000:]}"
                time.sleep(0.1)
        url = f"http://127.0.0.1:{port}"
        health = httpx.get(url + "/health", timeout=30).json()
        assert health["status"] == "ok" and health["hermes_loaded"], health
        r = httpx.post(url + "/propose_trade_adjustments/",
                       json={"prompt": "XYZ gapped up on volume"}, timeout=120)
        assert r.status_code == 200, r.text
        tid = r.json()["transaction_id"]
        r = httpx.post(url + "/feedback/phi3/", timeout=60, json={
            "transaction_id": tid, "feedback_type": "correction",
            "corrected_proposal": {"ticker": "XYZ", "action": "adjust", "side": "LONG",
                                   "new_stop_pct": 2.0, "new_target_pct": 5.0,
                                   "confidence": 0.8, "rationale": "tighter"}})
        assert r.status_code == 200 and r.json()["transaction_id"] == tid, r.text
        rows = asyncio.run(stored(srv.url, passwords["operator"], tid))
        assert {t: rows[t] for t in ("proposals", "feedback")} == {
            "proposals": 1, "feedback": 1}, rows
        for role, proc in procs.items():
            text = proc.output()
            assert "ermissions violation" not in text and "Traceback" not in text, \
                f"{role}:\n{text[-3000:]}"
