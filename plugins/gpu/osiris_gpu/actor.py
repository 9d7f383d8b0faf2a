"""The gpu supervisor: probe, over-budget policy (LRU pause of idle model actors after N reads,
confirmed by the probe), make-room-and-resume when a request wants a paused actor, and a clear
`cannot_fit` instead of thrashing. Every decision runs under one lock, one at a time."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import msgspec

from osiris_contracts.messages import GpuActor, GpuEvent, GpuStatus
from osiris_contracts.subjects import GPU_EVENTS, GPU_STATUS
from osiris_core import Actor, BadRequest, ServiceError, on_event, service
from osiris_core.nats.bus import gather_nodes
from osiris_core.protocol import ActorWanted, PauseArgs, PauseOp, ResumeOp
from osiris_core.subjects import ACTOR_WANTED

from .config import GB, GpuConfig
from .discovery import Tracked, is_model_actor, weights_on_disk
from .probe import Probe, Reading, open_probe

CONFIRM_EVERY_S = 0.05  # NVML re-read interval while waiting for a pause to show


def _gb(n: int | None) -> str:
    return "?" if n is None else f"{n / GB:.3f} GiB" if n >= GB / 100 else f"{n / 1024**2:.2f} MiB"


class GpuSupervisor(Actor[GpuConfig]):
    name = "gpu"
    description = "keeps model actors inside the VRAM budget by pausing and resuming them"

    async def on_start(self) -> None:
        self.probe: Probe
        self.probe, self.probe_error = open_probe(self.config.probe, self.config.devices)
        if self.probe_error:
            self.log.info("gpu: %s", self.probe_error)
        self.lock = asyncio.Lock()
        self.actors: dict[str, Tracked] = {}
        self.reading: Reading | None = None
        self.over_reads = 0
        self.stuck = False  # over budget with nothing pausable: reported once per episode
        self.counts: Counter[str] = Counter()
        self.wanted: dict[str, None] = {}  # FIFO of actors requests wait for
        self.kick = asyncio.Event()
        self.named = {*self.config.priorities, *self.config.footprints_gb, *self.config.pinned}
        self.spawn(self._serve_wanted(), "wanted")
        if self.config.poll_s > 0:
            self.spawn(self._poll_loop(), "poll")
        self.log.info("gpu: budget %s, probe %s, %d reads before pausing",
                      _gb(self.config.budget_bytes), self.probe.name,
                      self.config.over_budget_reads)

    async def on_stop(self) -> None:
        self.probe.close()

    # --- what we know -------------------------------------------------------------------
    async def refresh(self) -> None:
        """Every model actor's status, from every runtime (scatter-gather)."""
        nodes = await gather_nodes(self.ctx.bus, self.config.discover_window_s)
        seen: set[str] = set()
        for node in nodes:
            for st in node.actors:
                if st.name == self.name or st.name in seen or not is_model_actor(st, self.named):
                    continue  # one replica per name: the supervisor manages actors by name
                seen.add(st.name)
                self.actors.setdefault(st.name, Tracked(st.name)).update(st, node.node)
        for name, t in self.actors.items():
            if name not in seen:
                t.state = "absent"

    def footprint(self, t: Tracked) -> int | None:
        """Accelerator bytes the actor needs when running: configured, else the most it ever
        reported resident, else what the probe saw freed, else its weight files."""
        if t.name in self.config.footprints_gb:
            return int(self.config.footprints_gb[t.name] * GB)
        return t.measured or t.freed or weights_on_disk(t.model.model_path)

    def resident(self, t: Tracked) -> int:
        if t.reported is not None:
            return t.reported
        return (self.footprint(t) or 0) if t.loaded else 0

    def read(self) -> Reading:
        self.reading = self.probe.read([(t.name, self.resident(t)) for t in self.actors.values()])
        return self.reading

    def _order(self, t: Tracked) -> tuple[int, float]:
        return (self.config.priorities.get(t.name, 0), t.last_used or 0.0)

    def _pausable(self, t: Tracked) -> bool:
        return t.state == "running" and t.name not in self.config.pinned and self.resident(t) > 0

    # --- events -------------------------------------------------------------------------
    async def emit(self, kind: str, **fields: Any) -> None:
        self.counts[kind] += 1
        used = self.reading.used_bytes if self.reading else None
        evt = GpuEvent(kind=kind, used_bytes=fields.pop("used_bytes", used),
                       budget_bytes=self.config.budget_bytes, probe=self.probe.name,
                       ts=time.time(), **fields)
        self.log.info("gpu: %s %s %s", kind, evt.actor or "", evt.detail or "")
        await self.publish(GPU_EVENTS, evt)

    # --- acting on one actor ------------------------------------------------------------
    async def _pause(self, t: Tracked, reason: str, force: bool = False) -> bool:
        before = self.reading.used_bytes if self.reading else self.read().used_bytes
        expect = self.footprint(t)
        try:
            r = await self.ctx.bus.control(
                t.name, PauseOp(args=PauseArgs(force=force, timeout=self.config.pause_timeout_s)),
                timeout=self.config.pause_timeout_s + 60)
        except ServiceError as e:
            self.log.warning("gpu: could not pause %s (%s): %s", t.name, reason, e.message)
            return False
        t.update(r.status, t.node)
        if r.result.already:
            return True
        dur = r.result.pause_s or 0.0
        t.pauses += 1
        t.pause_s_total += dur
        t.last_pause_s = dur
        after = await self._confirm(before, expect)
        freed = before - after.used_bytes
        if self.probe.name != "actors" and freed > 0:
            t.freed = freed
        detail = None
        if expect and freed < expect // 2:
            detail = f"unconfirmed: the probe saw {_gb(freed)} freed of {_gb(expect)} expected"
        await self.emit("paused", actor=t.name, footprint_bytes=expect, freed_bytes=freed,
                        duration_s=dur, reason=reason, detail=detail)
        return True

    async def _confirm(self, before: int, expect: int | None) -> Reading:
        """Re-read until the pause shows (half the footprint gone) or confirm_timeout_s."""
        reading = self.read()
        if self.probe.name == "actors" or not expect:
            return reading
        deadline = time.monotonic() + self.config.confirm_timeout_s
        while before - reading.used_bytes < expect // 2 and time.monotonic() < deadline:
            await asyncio.sleep(CONFIRM_EVERY_S)  # the driver frees asynchronously
            reading = self.read()
        return reading

    async def _resume(self, t: Tracked, reason: str) -> bool:
        try:
            r = await self.ctx.bus.control(t.name, ResumeOp(), timeout=600)
        except ServiceError as e:
            self.log.warning("gpu: could not resume %s: %s", t.name, e.message)
            return False
        t.update(r.status, t.node)
        t.resumed_at = time.monotonic()
        if r.result.already:
            return True
        dur = r.result.resume_s or 0.0
        t.resumes += 1
        t.resume_s_total += dur
        t.last_resume_s = dur
        self.read()
        await self.emit("resumed", actor=t.name, footprint_bytes=self.footprint(t),
                        duration_s=dur, reason=reason)
        return True

    # --- policy: over budget ------------------------------------------------------------
    async def poll(self) -> dict[str, Any]:
        """One probe read and what the policy does about it."""
        async with self.lock:
            await self.refresh()
            reading = self.read()
            budget = self.config.budget_bytes
            actions: list[str] = []
            if reading.used_bytes > budget:
                self.over_reads += 1
                await self.emit("over_budget", reads=self.over_reads,
                                detail=f"{_gb(reading.used_bytes)} used of {_gb(budget)}")
                if self.over_reads >= self.config.over_budget_reads:
                    actions = await self._relieve()
            else:
                self.over_reads, self.stuck = 0, False
            waiting = [t.name for t in self.actors.values() if t.state == "paused"
                       and t.in_flight > 0]
        for name in waiting:  # requests wait for it and we may have missed the announcement
            self._want(name)
        return {"used_bytes": self.reading.used_bytes if self.reading else None,
                "budget_bytes": budget, "over_reads": self.over_reads, "paused": actions}

    async def _relieve(self) -> list[str]:
        """Pause LRU idle model actors (lowest priority first) until back under budget."""
        paused: list[str] = []
        tried: set[str] = set()
        assert self.reading is not None
        while self.reading.used_bytes > self.config.budget_bytes:
            cands = sorted((t for t in self.actors.values() if self._pausable(t)
                            and t.name not in tried and (t.in_flight == 0 or self.config.force)),
                           key=self._order)
            if not cands:
                if not self.stuck:
                    self.stuck = True
                    busy = sorted(t.name for t in self.actors.values()
                                  if self._pausable(t) and t.in_flight)
                    await self.emit("cannot_fit", detail=(
                        f"over budget ({_gb(self.reading.used_bytes)} used of "
                        f"{_gb(self.config.budget_bytes)}) and no idle model actor to pause"
                        + (f" (busy: {', '.join(busy)})" if busy else "")))
                break
            t = cands[0]
            tried.add(t.name)
            if await self._pause(t, "over_budget", force=self.config.force and t.in_flight > 0):
                paused.append(t.name)
                self.over_reads = 0
        return paused

    # --- policy: a request wants a paused actor -----------------------------------------
    def _want(self, actor: str) -> None:
        self.wanted[actor] = None
        self.kick.set()

    @on_event(ACTOR_WANTED)
    async def on_wanted(self, evt: ActorWanted) -> None:
        self._want(evt.actor)

    async def _serve_wanted(self) -> None:
        while True:
            await self.kick.wait()
            self.kick.clear()
            while self.wanted:
                name = next(iter(self.wanted))
                del self.wanted[name]
                try:
                    await self.bring_back(name)
                except Exception:  # noqa: BLE001 - one bad round must not stop the supervisor
                    self.log.exception("gpu: bringing back %s failed", name)

    async def bring_back(self, name: str) -> str:
        """Make room (pausing others LRU, draining — never cutting — their requests) and
        resume `name`; or say once that it cannot fit. Returns what happened."""
        async with self.lock:
            await self.refresh()
            t = self.actors.get(name)
            if t is None or t.state != "paused":
                return "not paused"
            reading = self.read()
            budget = self.config.budget_bytes
            need = self.footprint(t) or 0
            others = sorted((o for o in self.actors.values() if o is not t and self._pausable(o)),
                            key=lambda o: (o.in_flight > 0, *self._order(o)))
            fixed = reading.used_bytes - sum(self.resident(o) for o in others)
            if need > budget - fixed:
                why = (f"{name} needs {_gb(need)}; the budget is {_gb(budget)} and "
                       f"{_gb(max(fixed, 0))} of it cannot be freed (pinned actors, other "
                       "processes)")
                if t.cannot_fit != why:  # said once, not on every request or poll
                    t.cannot_fit = why
                    await self.emit("cannot_fit", actor=name, footprint_bytes=need, detail=why)
                return "cannot fit"
            t.cannot_fit = None
            for o in others:
                if need <= budget - self.reading.used_bytes:  # type: ignore[union-attr]
                    break
                young = time.monotonic() - o.resumed_at
                if o.in_flight and young < self.config.min_resident_s:
                    # let the actor we just resumed serve what it was resumed for
                    asyncio.get_running_loop().call_later(
                        self.config.min_resident_s - young, self._want, name)
                    return "waiting for room"
                await self._pause(o, f"make_room:{name}")
            if need > budget - self.reading.used_bytes:  # type: ignore[union-attr]
                return "no room yet"  # a drain timed out; the request gate asks again
            return "resumed" if await self._resume(t, "wanted") else "resume failed"

    # --- loops, service, control --------------------------------------------------------
    async def _poll_loop(self) -> None:
        while True:
            try:
                await self.poll()
            except Exception:  # noqa: BLE001 - keep polling
                self.log.exception("gpu: poll failed")
            await asyncio.sleep(self.config.poll_s)

    def snapshot(self) -> GpuStatus:
        r = self.reading
        return GpuStatus(
            probe=self.probe.name, probe_error=self.probe_error,
            budget_bytes=self.config.budget_bytes, used_bytes=r.used_bytes if r else None,
            over_reads=self.over_reads, over_budget_reads=self.config.over_budget_reads,
            devices=r.devices if r else [], events=dict(self.counts),
            actors=[GpuActor(
                name=t.name, state=t.state, footprint_bytes=self.footprint(t),
                resident_bytes=self.resident(t), last_used=t.last_used, in_flight=t.in_flight,
                priority=self.config.priorities.get(t.name, 0),
                pinned=t.name in self.config.pinned, pauses=t.pauses, resumes=t.resumes,
                pause_s_total=round(t.pause_s_total, 4), resume_s_total=round(t.resume_s_total, 4),
                last_pause_s=t.last_pause_s, last_resume_s=t.last_resume_s,
                cannot_fit=t.cannot_fit) for t in sorted(self.actors.values(), key=lambda t: t.name)],
        )

    @service(GPU_STATUS)
    async def status(self, req: None) -> GpuStatus:
        """Budget, usage per device, each model actor's state, footprint and counters."""
        if not self.lock.locked():
            async with self.lock:
                await self.refresh()
                self.read()
        return self.snapshot()

    def facts(self) -> dict[str, Any]:
        if not hasattr(self, "lock"):
            return {}
        out: dict[str, Any] = msgspec.to_builtins(self.snapshot())
        return out

    async def on_control(self, op: str, args: dict[str, Any]) -> dict[str, Any]:
        if op == "poll":
            return await self.poll()
        if op == "want":
            return {"result": await self.bring_back(_actor_arg(args))}
        if op == "evict":
            name = _actor_arg(args)
            async with self.lock:
                await self.refresh()
                t = self.actors.get(name)
                if t is None:
                    raise BadRequest(f"no model actor named {name!r}", field="actor")
                self.read()
                ok = await self._pause(t, "manual", force=bool(args.get("force", False)))
            return {"paused": ok}
        raise BadRequest(f"unknown control op {op!r} for gpu (poll, want, evict, pause, "
                         "resume, status)", field="op")


def _actor_arg(args: dict[str, Any]) -> str:
    v = args.get("actor")
    if not isinstance(v, str) or not v:
        raise BadRequest("control arg 'actor' is required (an actor name)", field="actor")
    return v
