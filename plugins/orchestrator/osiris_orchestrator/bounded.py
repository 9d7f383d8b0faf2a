"""A policy variant's calls with a time and a memory bound (DESIGN §14, issue 23 item 5).

A thread running CPU-bound Python cannot be stopped, so a variant other than the shipped
variant 0 runs in a worker subprocess of its own (`python -m osiris_orchestrator.policyworker`),
one per loaded variant, kept between calls. The worker caps its address space with
`RLIMIT_AS` (its size after start + `memory_mb`) and loads the source with the same checks as
in-process; each call (summarise, prompt, decide) is one length-prefixed msgpack frame each
way. A call that does not answer within `timeout_s`, or runs out of memory, or whose worker
dies is **cut**: the worker is killed (a fresh one starts on the next call) and the call raises
`PolicyCut`, a `PolicyViolation`. Variant 0 (the shipped source) stays in-process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import struct
import sys
from typing import Any

import msgspec

from osiris_contracts.messages import MarketTick, TradeProposal

from .policy import Decision, Policy, PolicyViolation, default_source, sha256

__all__ = ["BoundedPolicy", "InProcessPolicy", "PolicyCut", "PolicyRunner", "probe_load",
           "runner_for"]

log = logging.getLogger("osiris.orchestrator")
_HEADER = struct.Struct(">I")
MAX_FRAME = 64 * 1024 * 1024
START_TIMEOUT_S = 30.0
"""A worker's interpreter start and the variant's load (not counted in the call bound)."""


class PolicyCut(PolicyViolation):
    """A call was cut: past its time bound, out of memory, or its worker died."""


class InProcessPolicy:
    """The shipped variant 0, called directly (no worker, no bound, no overhead)."""

    bounded = False

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.variant = policy.variant
        self.sha256 = policy.sha256

    async def summarise(self, ticks: list[MarketTick]) -> dict[str, Any]:
        return self.policy.summarise(ticks)

    async def prompt(self, query: str, market: dict[str, Any]) -> str:
        return self.policy.prompt(query, market)

    async def decide(self, proposal: TradeProposal, market: dict[str, Any]) -> Decision:
        return self.policy.decide(proposal, market)

    async def close(self) -> None:
        return None


class BoundedPolicy:
    """One variant in its worker subprocess; calls are serialised (one at a time)."""

    bounded = True

    def __init__(self, policy: Policy | _Source, timeout_s: float, memory_mb: int) -> None:
        self.policy = policy
        self.variant = policy.variant
        self.sha256 = policy.sha256
        self.timeout_s = timeout_s
        self.memory_mb = memory_mb
        self.proc: asyncio.subprocess.Process | None = None
        self.starts = 0
        self.cuts = 0
        self._lock = asyncio.Lock()

    async def _start(self) -> asyncio.subprocess.Process:
        """A fresh worker: its interpreter may take START_TIMEOUT_S to start, loading the
        variant (its module's top level) `timeout_s` like any call."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "osiris_orchestrator.policyworker",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)})
        self.proc = proc
        self.starts += 1
        try:
            await asyncio.wait_for(self._send(None), START_TIMEOUT_S)  # its "ready"
        except TimeoutError:
            await self._kill()
            raise PolicyCut(f"policy {self.variant}: its worker did not start in "
                            f"{START_TIMEOUT_S:g}s") from None
        try:
            await asyncio.wait_for(self._send({"variant": self.variant, "source": self.policy.source,
                                                "memory_mb": self.memory_mb}), self.timeout_s)
        except TimeoutError:
            await self._kill()
            raise PolicyCut(f"policy {self.variant}: loading it took over {self.timeout_s:g}s "
                            "(variant_timeout_s)") from None
        return proc

    async def _send(self, msg: dict[str, Any] | None) -> Any:
        """One frame out (none for None), one frame back."""
        proc = self.proc
        assert proc is not None and proc.stdin is not None and proc.stdout is not None
        try:
            if msg is not None:
                body = msgspec.msgpack.encode(msg)
                proc.stdin.write(_HEADER.pack(len(body)) + body)
                await proc.stdin.drain()
            size = _HEADER.unpack(await proc.stdout.readexactly(_HEADER.size))[0]
            reply = msgspec.msgpack.decode(await proc.stdout.readexactly(size))
        except (asyncio.IncompleteReadError, ConnectionError, BrokenPipeError) as e:
            await self._kill()
            raise PolicyCut(f"policy {self.variant}: its worker died ({type(e).__name__}; "
                            f"memory bound {self.memory_mb} MB)") from None
        if "cut" in reply:
            await self._kill()
            raise PolicyCut(str(reply["cut"]))
        if "violation" in reply:
            raise PolicyViolation(str(reply["violation"]))
        return reply.get("ok")

    async def _kill(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(proc.wait(), 5.0)

    async def _call(self, op: str, *args: Any) -> Any:
        async with self._lock:
            try:
                if self.proc is None or self.proc.returncode is not None:
                    await self._start()
                return await asyncio.wait_for(self._send({"op": op, "args": list(args)}),
                                              self.timeout_s)
            except TimeoutError:
                self.cuts += 1
                await self._kill()
                raise PolicyCut(f"{op}() cut after {self.timeout_s:g}s (variant_timeout_s)") \
                    from None
            except PolicyCut:
                self.cuts += 1
                raise
            except PolicyViolation:
                raise
            except Exception as e:  # a failed spawn (EAGAIN, EMFILE), a frame that does not
                # decode: the variant's call failed, never the actor that made it
                self.cuts += 1
                await self._kill()
                raise PolicyCut(f"{op}(): its worker failed ({type(e).__name__}: {e})") from None
            except BaseException:  # cancelled mid-call: a spinning worker never reads its
                # pipe again and would outlive us, burning a core
                await self._kill()
                raise

    async def summarise(self, ticks: list[MarketTick]) -> dict[str, Any]:
        market: dict[str, Any] = await self._call("summarise", ticks)
        return market

    async def prompt(self, query: str, market: dict[str, Any]) -> str:
        text: str = await self._call("prompt", query, market)
        return text

    async def decide(self, proposal: TradeProposal, market: dict[str, Any]) -> Decision:
        d = await self._call("decide", proposal, market)
        return Decision(proposal=msgspec.convert(d["proposal"], TradeProposal), size=d["size"],
                        approved=d["approved"], reasons=d["reasons"], records=d["records"])

    async def close(self) -> None:
        """Kill the worker now, without waiting for a call in progress (which then fails)."""
        await self._kill()


async def probe_load(variant: str, source: str, timeout_s: float, memory_mb: int) -> None:
    """Load a source in a worker of its own, then stop it: a module whose top level hangs or
    runs out of memory raises PolicyCut before the orchestrator loads it in-process (where
    nothing could stop it). A statically bad source raises PolicyCut with its reasons too."""
    probe = BoundedPolicy(_Source(variant, source), timeout_s, memory_mb)
    try:
        await probe._start()
    finally:
        await probe._kill()


class _Source:
    """What a worker needs of a policy: its name and source (not loaded here)."""

    def __init__(self, variant: str, source: str) -> None:
        self.variant, self.source, self.sha256 = variant, source, sha256(source)


PolicyRunner = InProcessPolicy | BoundedPolicy


def runner_for(policy: Policy, timeout_s: float, memory_mb: int) -> PolicyRunner:
    """In-process for the shipped variant 0, a bounded worker for every other source."""
    if policy.source == default_source() or timeout_s <= 0:
        return InProcessPolicy(policy)
    return BoundedPolicy(policy, timeout_s, memory_mb)


# --- the worker side ------------------------------------------------------------------------

def _vm_bytes() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _frames() -> Any:
    inp = sys.stdin.buffer
    while True:
        head = inp.read(_HEADER.size)
        if len(head) < _HEADER.size:
            return
        (size,) = _HEADER.unpack(head)
        if size > MAX_FRAME:
            return
        yield msgspec.msgpack.decode(inp.read(size))


def _reply(out: Any, msg: dict[str, Any]) -> None:
    try:
        body = msgspec.msgpack.encode(msg)
    except (TypeError, ValueError, OverflowError) as e:
        body = msgspec.msgpack.encode({"violation": f"reply not encodable: {e}"})
    out.write(_HEADER.pack(len(body)) + body)
    out.flush()


def _serve(policy: Policy, op: str, args: list[Any]) -> Any:
    if op == "summarise":
        return policy.summarise([msgspec.convert(t, MarketTick) for t in args[0]])
    if op == "prompt":
        return policy.prompt(str(args[0]), dict(args[1]))
    if op == "decide":
        d = policy.decide(msgspec.convert(args[0], TradeProposal), dict(args[1]))
        return {"proposal": d.proposal, "size": d.size, "approved": d.approved,
                "reasons": d.reasons, "records": d.records}
    raise PolicyViolation(f"unknown op {op!r}")


def main() -> None:
    out = sys.stdout.buffer
    sys.stdout = sys.stderr  # a stray print never corrupts the frames
    _reply(out, {"ok": "ready"})  # imports done: the load's bound starts with the hello
    frames = _frames()
    hello = next(frames, None)
    if hello is None:
        return
    memory = int(hello.get("memory_mb", 0))
    if memory > 0:
        limit = _vm_bytes() + memory * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    try:
        policy = Policy(str(hello["variant"]), str(hello["source"]))
    except PolicyViolation as e:
        _reply(out, {"cut": str(e)})
        return
    except MemoryError:
        _reply(out, {"cut": f"policy {hello['variant']}: out of memory while loading"})
        return
    _reply(out, {"ok": True})
    for msg in frames:
        try:
            _reply(out, {"ok": _serve(policy, str(msg.get("op")), list(msg.get("args", [])))})
        except (PolicyViolation, MemoryError) as e:
            # Policy reports a MemoryError inside the variant as a violation "raised
            # MemoryError" (its context); a variant cannot raise one itself (not a builtin it
            # gets): either way the bound was hit, and this worker may be in a bad state
            if isinstance(e, MemoryError) or isinstance(e.__context__, MemoryError):
                _reply(out, {"cut": f"{msg.get('op')}() out of memory ({memory} MB, "
                                    f"variant_memory_mb)"})
                return
            _reply(out, {"violation": str(e)})
