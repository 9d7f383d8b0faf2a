"""The whole loop under `osiris nats-config`: each role a real `osiris run` process with its
own user, against a nats-server started with the generated file. A permission the code needs
and the file does not grant fails here (the server's refusal is logged by the process)."""

from __future__ import annotations

import asyncio
import subprocess
import sysconfig
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from osiris_contracts.messages import StoreQuery, StoreRows
from osiris_contracts.subjects import STORE_QUERY
from osiris_core.cli.natsconfig import PASSWORD_ENV
from osiris_core.config import OsirisSettings, load_config
from osiris_core.nats.bus import Bus
from osiris_core.nats.connection import open_connection
from osiris_core.nats.server import EmbeddedNats, free_port
from osiris_core.ops.natsconfig import inbox_prefix, load_for, render, role_permissions
from osiris_core.testing import OsirisProcess, write_config

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sysconfig.get_path("scripts"))

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


def run_loop(tmp_path: Path, tiny_models: Path, server_config: str,
             processes: dict[str, list[str]], passwords: dict[str, str],
             health_checks: dict[str, list[str]] | None = None) -> None:
    """Start one `osiris run` per user (its plugins), propose and correct through the gateway,
    find both rows in the store as the operator; no process may log a refusal.
    `health_checks`: user → an `osiris ...` command line run with that user's config."""
    port = free_port()
    tables: dict[str, dict[str, Any]] = {
        "gateway": {"port": port},
        "hermes": {"model": str(tiny_models / "hermes")},
        "phi3": {"model": str(tiny_models / "phi3-onnx")},
        "trainer": {"base_model": str(tiny_models / "phi3"), "schedule": ""},
        "tts": {"engine": "espeak"},
    }
    env = {"HF_HUB_OFFLINE": "1", "OSIRIS_LOAD_PLUGINS": ",".join(
        p for ps in processes.values() for p in ps)}
    with EmbeddedNats(tmp_path / "nats", config=server_config) as srv, ExitStack() as stack:
        procs: dict[str, OsirisProcess] = {}
        for user, plugins in processes.items():
            d = tmp_path / user
            d.mkdir()
            cfg = write_config(d / "osiris.toml", srv.url, plugins,
                               {p: tables[p] for p in plugins if p in tables},
                               nats_user=user, nats_password=passwords[user],
                               nats_inbox_prefix=inbox_prefix(user),
                               data_dir=str(tmp_path / "data" / user))
            procs[user] = OsirisProcess(cfg, env=env).start(wait_ready=False)
            stack.callback(procs[user].__exit__)
        deadline = time.monotonic() + 120  # all start at once: imports share the 2 cores
        for user, proc in procs.items():
            while "osiris: ready" not in proc.output():
                assert proc.proc is not None and proc.proc.poll() is None, proc.output()
                assert time.monotonic() < deadline, f"{user}: {proc.output()[-3000:]}"
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
        if any("tts" in ps for ps in processes.values()):
            r = httpx.post(url + "/speak", json={"text": "Long XYZ."}, timeout=60)
            assert r.status_code == 200 and r.content[:4] == b"RIFF", r.text[:300]
        for user, line in (health_checks or {}).items():
            args = [a if a != "/etc/osiris/osiris.toml" else str(tmp_path / user / "osiris.toml")
                    for a in line[1:]]
            args = [a.replace("$$", "$") for a in args]  # compose's escape of a literal $
            done = subprocess.run([str(BIN / "osiris"), *args], capture_output=True, text=True,
                                  timeout=120)
            assert done.returncode == 0, (user, line, done.stdout, done.stderr)
        rows = asyncio.run(stored(srv.url, passwords["operator"], tid))
        assert {t: rows[t] for t in ("proposals", "feedback")} == {
            "proposals": 1, "feedback": 1}, rows
        for user, proc in procs.items():
            text = proc.output()
            assert "ermissions violation" not in text and "Traceback" not in text, \
                f"{user}:\n{text[-3000:]}"


def test_the_whole_loop_runs_with_one_least_privilege_user_per_role(
        tmp_path: Path, tiny_models: Path) -> None:
    loaded, roles = load_for(load_config(None, search_cwd=False))
    perms = role_permissions(loaded, roles)
    passwords = {r: f"pw-{r}" for r in perms}
    run_loop(tmp_path, tiny_models, render(perms, passwords), PROCESSES, passwords)


def test_the_loop_runs_under_the_compose_files_nats_users(
        tmp_path: Path, tiny_models: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """deploy/nats/osiris-users.conf as compose uses it: nats-server reads each user's
    password from its environment; each service runs as its user (compose's core also runs
    sim, dgm and bridge, which the per-role test and test_nats_config cover)."""
    users = ROOT / "deploy" / "nats" / "osiris-users.conf"
    passwords = {u: f"secret-{u}" for u in ("core", "models", "tts", "operator")}
    for user, password in passwords.items():
        monkeypatch.setenv(PASSWORD_ENV.format(role=user.upper()), password)
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())["services"]
    checks = {svc: compose[svc]["healthcheck"]["test"][1:] for svc in ("models", "tts")}
    assert all(c[:2] == ["osiris", "request"] for c in checks.values()), checks
    run_loop(tmp_path, tiny_models, users.read_text(), {
        "core": ["gateway", "orchestrator", "feedback"],
        "models": ["hermes", "phi3", "trainer"],
        "tts": ["tts"]}, passwords, health_checks=checks)
