"""The orchestrator actor: turns buffered market ticks into workflow runs, and serves
`osiris.proposals.propose` (`/propose_trade_adjustments/`)."""

from __future__ import annotations

from typing import Any

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from osiris_core import Actor, BadRequest, service
from osiris_core.contracts import ProposeReply, ProposeRequest
from osiris_core.subjects import PROPOSALS_PROPOSE

from .config import OrchestratorConfig
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
        self.sub: Subscription | None = await self.ctx.nc.subscribe(
            self.config.market_channel, queue=self.name, cb=self._on_tick,
            pending_msgs_limit=65_536)
        if self.config.redis_url:
            self.spawn(self._from_redis(), "redis-ticks")
        self.spawn(self._runner(), "runner")

    async def on_stop(self) -> None:
        if self.sub is not None:
            try:
                await self.sub.unsubscribe()
            except Exception:  # noqa: BLE001 - connection may be closing
                pass
            self.sub = None

    async def _on_tick(self, msg: Msg) -> None:
        self.buffer.feed(msg.data, msg.subject)

    async def _from_redis(self) -> None:
        async for data in redis_messages(self.config.redis_url, self.config.market_channel,
                                         self.redis_state):
            self.buffer.feed(data, f"redis {self.config.market_channel}")

    async def _runner(self) -> None:
        while True:
            batch = await self.buffer.batches.get()
            result = await self.workflow.run(self.config.query, batch)
            self._note(result)

    def _note(self, result: RunResult) -> None:
        r = result.run
        self.runs[r.status] = self.runs.get(r.status, 0) + 1
        self.last_run = {"run_id": r.run_id, "status": r.status, "error": r.error,
                         "transaction_id": r.transaction_id,
                         "duration_ms": round(sum(s.duration_ms for s in r.steps), 1)}

    @service(PROPOSALS_PROPOSE)
    async def propose(self, req: ProposeRequest) -> ProposeReply:
        if not req.prompt.strip():
            raise BadRequest("prompt must not be empty", field="prompt")
        if not 1 <= req.max_length <= 4096:
            raise BadRequest("max_length must be 1–4096", field="max_length")
        return await self.workflow.propose(req.prompt, req.max_length)

    def facts(self) -> dict[str, Any]:
        return {"market_channel": self.config.market_channel,
                "ticks_per_proposal": self.config.ticks_per_proposal, "runs": dict(self.runs),
                "last_run": self.last_run, **self.buffer.facts(), **self.redis_state}
