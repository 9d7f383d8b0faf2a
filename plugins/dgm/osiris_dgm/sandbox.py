"""Running untrusted work in a subprocess: clean environment (nothing inherited, so no
secrets), no network (a new user + network namespace via `unshare -rn` where the kernel
allows it; the harness's audit hook refuses sockets in any case), CPU-time, address-space,
file-size and open-file limits, a wall-clock limit that kills the whole process group, and a
bounded output."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import warnings
from dataclasses import dataclass

__all__ = ["Limits", "SandboxResult", "isolation", "run_sandboxed"]

MAX_OUTPUT = 64 * 1024 * 1024


@dataclass(frozen=True)
class Limits:
    cpu_s: int = 30
    wall_s: float = 60.0
    memory_mb: int = 1024
    file_mb: int = 8
    open_files: int = 64


@dataclass
class SandboxResult:
    returncode: int
    stdout: bytes
    stderr: str
    killed: str | None = None
    """Why the sandbox was killed: 'wall time', 'cpu time', 'memory', 'output' (None: it ended)."""

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.killed is None


@functools.cache
def isolation() -> str:
    """'netns' when `unshare -rn` works here (no network at all), else 'audit-hook'."""
    exe = shutil.which("unshare")
    if exe is None:
        return "audit-hook"
    try:
        r = subprocess.run([exe, "-rn", "true"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "audit-hook"
    return "netns" if r.returncode == 0 else "audit-hook"


def _limit(lim: Limits) -> None:  # runs in the child between fork and exec
    os.setsid()
    resource.setrlimit(resource.RLIMIT_CPU, (lim.cpu_s, lim.cpu_s + 1))
    mem = lim.memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    resource.setrlimit(resource.RLIMIT_FSIZE, (lim.file_mb * 1024 * 1024,) * 2)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lim.open_files, lim.open_files))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _why(code: int, stderr: str) -> str | None:
    if code in (-signal.SIGXCPU, -signal.SIGKILL) and "MemoryError" not in stderr:
        return "cpu time" if code == -signal.SIGXCPU else None
    if "MemoryError" in stderr or "Cannot allocate memory" in stderr:
        return "memory"
    return None


async def run_sandboxed(argv: list[str], stdin: bytes, limits: Limits,
                        python: bool = True) -> SandboxResult:
    """Run `argv` (after `python -I` when `python`) in the sandbox; never raises for what the
    child does — a crash, a kill or a limit is in the result."""
    cmd = ([sys.executable, "-I", *argv] if python else list(argv))
    if isolation() == "netns":
        cmd = ["unshare", "-rn", *cmd]
    with tempfile.TemporaryDirectory(prefix="osiris-sandbox-") as home:
        env = {"PATH": "/usr/bin:/bin", "HOME": home, "TMPDIR": home, "LANG": "C.UTF-8",
               "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1"}
        with warnings.catch_warnings():
            # lancedb (imported by the feedback actor in the same process) warns on any fork;
            # this child only sets limits, then execs
            warnings.filterwarnings("ignore", message="lancedb fork support",
                                    category=RuntimeWarning)
            proc = await asyncio.create_subprocess_exec(
                *cmd, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, env=env, cwd=home,
                preexec_fn=functools.partial(_limit, limits), limit=MAX_OUTPUT)
        killed: str | None = None
        try:
            out, err = await asyncio.wait_for(proc.communicate(stdin), limits.wall_s)
        except TimeoutError:
            killed = "wall time"
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            out, err = await proc.communicate()
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
            raise
        code = proc.returncode if proc.returncode is not None else -9
        text = err.decode(errors="replace")[-4000:]
        killed = killed or _why(code, text)
        if len(out) >= MAX_OUTPUT:
            killed = killed or "output"
        return SandboxResult(returncode=code, stdout=out, stderr=text, killed=killed)
