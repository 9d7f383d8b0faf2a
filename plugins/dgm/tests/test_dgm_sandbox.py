"""The sandbox on its own, with hostile code: no secrets, no network, bounded CPU, memory
and wall time — and the harness's audit hook refuses sockets, processes and writes even where
no network namespace can be made."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest
from osiris_dgm.sandbox import Limits, isolation, run_sandboxed

LIMITS = Limits(cpu_s=3, wall_s=8, memory_mb=512)
GUARD = "import sys; from osiris_dgm.harness import _guard; sys.addaudithook(_guard)\n"


async def test_no_environment_secret_reaches_the_child(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OSIRIS_NATS_TOKEN", "hunter2")
    r = await run_sandboxed(["-c", "import os, sys; sys.stdout.write(repr(dict(os.environ)))"],
                            b"", LIMITS)
    assert r.ok, r.stderr
    assert b"hunter2" not in r.stdout and b"OSIRIS_NATS_TOKEN" not in r.stdout
    assert os.environ["OSIRIS_NATS_TOKEN"] == "hunter2"


async def test_no_network_from_the_child() -> None:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    try:
        connect = f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=2)"
        guarded = await run_sandboxed(["-c", GUARD + connect], b"", LIMITS)
        assert not guarded.ok and "PermissionError: sandbox: " in guarded.stderr
        bare = await run_sandboxed(["-c", connect], b"", LIMITS)
        print(f"isolation: {isolation()}; bare connect: exit {bare.returncode}")
        if isolation() == "netns":  # a fresh network namespace: not even loopback is up
            assert not bare.ok and "Network is unreachable" in bare.stderr
    finally:
        srv.close()


@pytest.mark.parametrize(("code", "killed"), [
    ("x = bytearray(4 * 1024 ** 3)", "memory"),
    ("while True: pass", "cpu time"),
    ("import time; time.sleep(60)", "wall time"),
])
async def test_limits_kill_bombs_and_hangs(code: str, killed: str) -> None:
    r = await run_sandboxed(["-c", code], b"", LIMITS)
    assert not r.ok and r.killed == killed, (r.returncode, r.killed, r.stderr[-300:])


@pytest.mark.parametrize(("code", "event"), [
    ("import subprocess; subprocess.run(['true'])", "subprocess"),
    ("open('/tmp/osiris-sandbox-escape', 'w').write('x')", "opening"),
    ("import os; os.open('/tmp/osiris-sandbox-escape', os.O_WRONLY | os.O_CREAT)", "opening"),
    ("open('/etc/hostname').read()", "opening"),
    ("import os; os.system('true')", "os.system"),
    ("import ctypes", "import ctypes"),
])
async def test_the_audit_hook_refuses_escapes(code: str, event: str) -> None:
    r = await run_sandboxed(["-c", GUARD + code], b"", LIMITS)
    assert not r.ok and f"sandbox: {event}" in r.stderr, r.stderr[-300:]
    assert not Path("/tmp/osiris-sandbox-escape").exists()  # noqa: ASYNC240


def test_isolation_is_reported() -> None:
    assert isolation() in ("netns", "audit-hook")
    assert sys.platform != "linux" or isolation() == "netns" or os.geteuid() != 0
