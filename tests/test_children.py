"""Children we start (the embedded nats-server, a test's `osiris run`) end with their parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux")

CHILD = textwrap.dedent("""
    import pathlib, signal, sys, time
    out = pathlib.Path(sys.argv[1])
    def on_term(signum, frame):
        out.write_text("SIGTERM")
        sys.exit(0)
    signal.signal(signal.SIGTERM, on_term)
    out.write_text("ready")
    time.sleep(60)
""")

PARENT = textwrap.dedent("""
    import subprocess, sys, time
    from osiris_core.children import die_with_parent
    child = subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2]],
                             preexec_fn=die_with_parent)
    print(child.pid, flush=True)
    time.sleep(60)
""")


def _wait_for(path: Path, text: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text() == text:
            return text
        time.sleep(0.01)
    return path.read_text() if path.exists() else "(nothing)"


def test_a_child_gets_sigterm_when_its_parent_is_killed_9(tmp_path: Path) -> None:
    """SIGTERM, so the child runs its own bounded shutdown (nats-server writes its store out,
    `osiris run` drains) instead of being cut off mid-write by SIGKILL."""
    out = tmp_path / "child.txt"
    parent = subprocess.Popen([sys.executable, "-c", PARENT, CHILD, str(out)],
                              stdout=subprocess.PIPE, env={**os.environ})
    assert parent.stdout is not None
    child_pid = int(parent.stdout.readline())
    try:
        assert _wait_for(out, "ready") == "ready"
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        assert _wait_for(out, "SIGTERM") == "SIGTERM"
    finally:
        parent.kill()
        parent.wait()
        parent.stdout.close()
        try:
            os.kill(child_pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
