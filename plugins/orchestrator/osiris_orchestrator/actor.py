"""The orchestrator actor: turns buffered market ticks into workflow runs, and serves
`osiris.proposals.propose` (`/propose_trade_adjustments/`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from osiris_core import Actor, BadRequest, EventMeta, RequestContext, service
from osiris_core.contracts import MarketTick, ProposeReply, ProposeRequest
from osiris_core.subjects import PROPOSALS_PROPOSE, REQUEST_ID_HEADER

from .config import OrchestratorConfig
from .livepolicy import LiveTracker, PolicySlots
from .policy import PolicyViolation
from .ticks import TickBuffer, redis_messages
from .workflow import RunResult, Workflow


class OrchestratorActor(Actor[OrchestratorConfig]):
    name = "orchestrator"
    description = "tick buffer → phi3 → risk gate → hermes → events and run records"

    async def on_start(self) -> None:
        self.workflow = Workflow(self.ctx.bus, self.config)
        self.buffer = TickBuffer(self.config.ticks_per_proposal)
        self.runs = {"ok": 0, "rejected": 0, "error": 0}
        self.last_run: dict[str, Any] | None = None
        self.redis_state: dict[str, Any] = {}
        self.slots = PolicySlots(Path(self.ctx.data_dir) / self.config.policy_dir)
        if self.slots.load_error:
            self.log.error("policy: %s", self.slots.load_error)
        self.tracker = LiveTracker(self.config.trade_horizon_bars)
        self.violations: dict[str, int] = {}
        # the channel comes from config: a managed subscription (paused with the actor,
        # bounded, drained on stop, a failing tick never restarts the orchestrator)
        await self.subscribe(self.config.market_channel, self._on_tick, event_type=bytes)
        if self.config.redis_url:
            self.spawn(self._from_redis(), "redis-ticks")
        self.spawn(self._runner(), "runner")

    async def _on_tick(self, data: bytes, meta: EventMeta) -> None:
        self._fed(self.buffer.feed(data, meta.subject))

    def _fed(self, tick: MarketTick | None) -> None:
        if tick is not None:
            self.tracker.tick(tick)

    async def _from_redis(self) -> None:
        async for data in redis_messages(self.config.redis_url, self.config.market_channel,
                                         self.redis_state):
            self._fed(self.buffer.feed(data, f"redis {self.config.market_channel}"))

    async def _runner(self) -> None:
        while True:
            batch = await self.buffer.batches.get()
            live, shadow = self.slots.live, self.slots.shadow  # a swap waits for the next run
            result = await self.workflow.run(self.config.query, batch, live, shadow)
            self._note(result)
            self._track(batch[-1], result)

    def _track(self, last: MarketTick, result: RunResult) -> None:
        violation = result.violation
        if violation:
            self.violations[result.policy or "?"] = self.violations.get(result.policy or "?", 0) + 1
        if result.advice is None and not violation:
            return  # no decision (a model was down): nothing to compare
        if result.shadow:
            self.log.info("shadow %s: %s (live %s: %s)", result.shadow.get("variant"),
                          "approved" if result.shadow.get("approved") else "rejected",
                          result.policy, "approved" if result.advice and result.advice.approved
                          else "rejected")
        taken = result.adjusted or result.phi3_proposal
        proposal = msgspec.structs.asdict(taken) if taken is not None else None
        self.tracker.record(last, result.policy or "0", bool(result.advice and result.advice.approved),
                            proposal, result.size, result.shadow, violation)

    def _note(self, result: RunResult) -> None:
        r = result.run
        self.runs[r.status] = self.runs.get(r.status, 0) + 1
        self.last_run = {"run_id": r.run_id, "status": r.status, "error": r.error,
                         "transaction_id": r.transaction_id,
                         "duration_ms": round(sum(s.duration_ms for s in r.steps), 1)}

    @service(PROPOSALS_PROPOSE)
    async def propose(self, req: ProposeRequest, ctx: RequestContext) -> ProposeReply:
        """A caller's request id (sent again on a retry after a replica died) fixes the
        transaction id, so a re-sent proposal is one transaction: its events deduplicate."""
        if not req.prompt.strip():
            raise BadRequest("prompt must not be empty", field="prompt")
        if not 1 <= req.max_length <= 4096:
            raise BadRequest("max_length must be 1–4096", field="max_length")
        return await self.workflow.propose(req.prompt, req.max_length,
                                           request_id=ctx.headers.get(REQUEST_ID_HEADER))

    async def on_control(self, op: str, args: dict[str, Any]) -> dict[str, Any]:
        """Policy ops (the dgm kernel's, and `osiris dgm rollback`): policy, policy_shadow,
        policy_clear_shadow, policy_promote, policy_rollback."""
        try:
            if op == "policy":
                since = int(args.get("since", 0))
                c = self.config
                return {**self.slots.facts(), "violations": dict(self.violations),
                        "outcomes": self.tracker.outcomes(since), **self.tracker.facts(),
                        "config": {"query": c.query, "ticks_per_proposal": c.ticks_per_proposal,
                                   "max_length": c.max_length,
                                   "trade_horizon_bars": c.trade_horizon_bars,
                                   "risk": msgspec.to_builtins(c.risk)}}
            if op == "policy_shadow":
                variant = str(args.get("variant", ""))
                source = args.get("source")
                if source is not None and not isinstance(source, str):
                    raise BadRequest("source must be a string", field="source")
                self.slots.set_shadow(variant, source)
                self.log.info("policy %s loaded in shadow beside %s", variant,
                              self.slots.live.variant)
            elif op == "policy_clear_shadow":
                self.slots.clear_shadow()
            elif op == "policy_promote":
                self.slots.promote(str(args.get("variant", "")))
                self.log.warning("policy %s is live (previous %s)", self.slots.live.variant,
                                 self.slots.previous and self.slots.previous.variant)
            elif op == "policy_rollback":
                back = args.get("variant")
                old, new = self.slots.rollback(None if back in (None, "") else str(back))
                self.log.warning("policy rolled back from %s to %s: %s", old, new,
                                 args.get("reason", "by hand"))
            else:
                return await super().on_control(op, args)
        except PolicyViolation as e:
            raise BadRequest(str(e), field="source") from None
        except ValueError as e:
            raise BadRequest(str(e), field="variant") from None
        except OSError as e:
            raise BadRequest(f"policy store: {e}", field="variant") from None
        return {**self.slots.facts(), **self.tracker.facts()}

    def facts(self) -> dict[str, Any]:
        return {"market_channel": self.config.market_channel,
                "ticks_per_proposal": self.config.ticks_per_proposal, "runs": dict(self.runs),
                "last_run": self.last_run, **self.buffer.facts(), **self.redis_state,
                "policy": {"live": self.slots.live.variant,
                           "shadow": self.slots.shadow and self.slots.shadow.variant,
                           "previous": self.slots.previous and self.slots.previous.variant,
                           "violations": sum(self.violations.values())}}
