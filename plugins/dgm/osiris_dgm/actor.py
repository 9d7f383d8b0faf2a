"""The dgm actors: `dgm` (the kernel: iterations on request or on a schedule, the live
monitor, rollback) and `dgm-planner` (the `osiris.dgm.plan` service over the installed
planners — the seeds' AZR planner)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import msgspec
from osiris_orchestrator.config import OrchestratorConfig

from osiris_contracts.messages import now_iso
from osiris_contracts.subjects import DGM_EVENTS
from osiris_core import Actor, BadRequest, NotFound, Unavailable, service
from osiris_core.errors import ServiceError

from .archive import ReplyCache
from .config import DgmConfig
from .contracts import (
    DGM_PLAN,
    DGM_ROLLBACK,
    DGM_RUN,
    DgmEvent,
    PlanReply,
    PlanRequest,
    RollbackReply,
    RollbackRequest,
    RunReply,
    RunRequest,
    Variant,
)
from .kernel import AUTO, Kernel, Rejected
from .phase import Shadow
from .planners import Planner, PlannerContext, collect_planners

MAX_ITERATIONS = 1000
PLANNER_REPLIES = "planner_replies.jsonl"
"""Model-backed planners' replies, under data_dir/dgm (beside the backtest's replies.jsonl)."""


def market_csv(cfg: DgmConfig, data_dir: Path) -> Path:
    """The configured CSV, else the demo's synthetic market under data_dir."""
    return Path(cfg.market_csv) if cfg.market_csv else data_dir / "market" / "sim.csv"


class DgmActor(Actor[DgmConfig]):
    name = "dgm"
    description = "self-improvement of the orchestrator's policy: plan, verify, shadow, promote, roll back"

    async def on_start(self) -> None:
        data_dir = Path(self.ctx.data_dir)
        self.kernel = Kernel(self.config, OrchestratorConfig(), data_dir, self.ctx.bus,
                             self._emit, market_csv(self.config, data_dir))
        self.last_error: str | None = None
        self.spawn(self._monitor(), "monitor")
        if self.config.schedule_every_s > 0:
            self.spawn(self._schedule(), "schedule")

    async def _emit(self, kind: str, v: Variant, message: str) -> None:
        await self.publish(DGM_EVENTS, DgmEvent(kind=kind, variant=v, timestamp=now_iso(),
                                                message=message),
                           msg_id=f"dgm:{v.id}:{v.revision}:{kind}")
        self.log.info("variant %s %s%s", v.id, kind, f": {message}" if message else "")

    async def _monitor(self) -> None:
        while True:
            await asyncio.sleep(self.config.monitor_interval_s)
            try:
                await self.kernel.monitor()
                self.last_error = None
            except (ServiceError, RuntimeError, OSError) as e:
                msg = getattr(e, "message", None) or f"{type(e).__name__}: {e}"
                if msg != self.last_error:
                    self.log.warning("dgm monitor: %s", msg)
                self.last_error = msg

    async def _schedule(self) -> None:
        while True:
            await asyncio.sleep(self.config.schedule_every_s)
            try:
                await self.kernel.iterate(self.config.planner)
            except (ServiceError, RuntimeError, OSError, LookupError, ValueError, Rejected) as e:
                self.log.warning("scheduled dgm iteration failed: %s", e)

    @service(DGM_RUN)
    async def run(self, req: RunRequest) -> RunReply:
        if not 1 <= req.iterations <= MAX_ITERATIONS:
            raise BadRequest(f"iterations must be 1–{MAX_ITERATIONS}", field="iterations")
        planner = req.planner or self.config.planner
        done: list[Variant] = []
        try:
            seed = await self.kernel.seed()
            for _ in range(req.iterations):
                done.append(await self.kernel.iterate(planner))
        except Rejected as e:
            raise Unavailable(f"the seed policy cannot be scored: {e}") from None
        except (RuntimeError, OSError, ValueError, LookupError) as e:
            raise Unavailable(f"dgm cannot evaluate: {e}") from None
        best = self.kernel.archive.best() or seed
        phase = self.kernel.phase
        shadow = phase.candidate if isinstance(phase, Shadow) else None
        msg = (f"variant {shadow} is in shadow: it goes live after "
               f"{self.config.shadow_decisions} live decisions" if shadow else "")
        return RunReply(iterations=done, best=best.id, best_reward=best.reward_full,
                        seed_reward=seed.reward_full, live=self.kernel.live_id(), shadow=shadow,
                        message=msg)

    @service(DGM_ROLLBACK)
    async def rollback(self, req: RollbackRequest) -> RollbackReply:
        if req.variant is not None and req.variant not in self.kernel.archive.variants:
            raise NotFound(f"unknown variant {req.variant!r}", field="variant")
        try:
            old, live = await self.kernel.rollback(req.variant, req.reason)
        except ServiceError as e:
            raise BadRequest(f"rollback refused by the orchestrator: {e.message}",
                             field="variant") from None
        return RollbackReply(rolled_back_from=old, live=live,
                             message=f"serving variant {live}")

    def facts(self) -> dict[str, Any]:
        return {**self.kernel.facts(), "monitor_error": self.last_error}


class PlannerActor(Actor[DgmConfig]):
    name = "dgm-planner"
    description = "osiris.dgm.plan: traces + policy + planner name → a unified diff"

    async def on_start(self) -> None:
        self.planners: dict[str, Planner]
        self.planners, problems = await asyncio.to_thread(collect_planners)
        for p in problems:
            self.log.error("planner plugin skipped: %s", p)
        cache = ReplyCache(Path(self.ctx.data_dir) / "dgm" / PLANNER_REPLIES)
        self.context = PlannerContext(bus=self.ctx.bus, timeout_s=self.config.planner_timeout_s,
                                      candidates=self.config.llm_candidates,
                                      temperature=self.config.llm_temperature, cache=cache)

    @service(DGM_PLAN)
    async def plan(self, req: PlanRequest) -> PlanReply:
        planner = self.planners.get(req.planner)
        if planner is None and req.planner == AUTO:
            raise NotFound("the auto planner is the dgm kernel's bandit over planners: run it "
                           "with osiris.dgm.run (osiris dgm --planner auto)", field="planner")
        if planner is None:
            raise NotFound(f"unknown planner {req.planner!r} (installed: "
                           f"{', '.join(sorted(self.planners))})", field="planner")
        if not req.policy_source.strip():
            raise BadRequest("policy_source must not be empty", field="policy_source")
        try:
            reply = await planner(req, self.context)
        except ServiceError as e:
            raise Unavailable(f"planner {req.planner}: {e.message}") from None
        except Exception as e:  # noqa: BLE001 - a planner's bug is this request's error
            raise Unavailable(f"planner {req.planner} failed: {type(e).__name__}: {e}") from None
        if isinstance(reply, dict):  # a plugin need not import osiris_dgm
            try:
                reply = msgspec.convert({"planner": req.planner, **reply}, PlanReply)
            except msgspec.ValidationError as e:
                raise Unavailable(f"planner {req.planner} returned a bad reply: {e}") from None
        if not isinstance(reply, PlanReply):
            raise Unavailable(f"planner {req.planner} returned {type(reply).__name__}, "
                              "not a PlanReply or a dict with 'diff'")
        return reply

    def facts(self) -> dict[str, Any]:
        return {"planners": sorted(self.planners), "cache_hits": self.context.hits,
                "cache_misses": self.context.misses}
