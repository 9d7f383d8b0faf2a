"""The orchestrator actor: turns buffered market ticks into workflow runs, and serves
`osiris.proposals.propose` (`/propose_trade_adjustments/`)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
from nats.js.errors import BucketNotFoundError, KeyNotFoundError
from nats.js.kv import KeyValue

from osiris_contracts.messages import MarketTick, ProposeReply, ProposeRequest
from osiris_contracts.subjects import PROPOSALS_PROPOSE
from osiris_core import Actor, BadRequest, EventMeta, RequestContext, control_op, service
from osiris_core.subjects import REQUEST_ID_HEADER

from .bounded import BoundedPolicy, PolicyRunner, probe_load, runner_for
from .config import OrchestratorConfig
from .contracts import (
    PolicyClearShadowOp,
    PolicyOp,
    PolicyPromoteOp,
    PolicyReport,
    PolicyRollbackOp,
    PolicyRules,
    PolicyShadowOp,
    PolicyState,
)
from .livepolicy import LiveTracker, PolicySlots, check_variant
from .policy import Policy, PolicyViolation
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
        self.runners: dict[tuple[str, str], PolicyRunner] = {}
        self.kv: KeyValue | None = None
        self.kv_revision = 0
        if self.config.policy_bucket:
            try:  # before the first run: a late replica serves the live slot
                await self._join_bucket()
            except Exception as e:  # noqa: BLE001 - no bucket (e.g. no grant): serve alone, loudly
                self.kv = None
                self.log.error("policy bucket %s unavailable (%r): this replica's slots are its "
                               "own (data_dir)", self.config.policy_bucket, e)
        # the channel comes from config: a managed subscription (paused with the actor,
        # bounded, drained on stop, a failing tick never restarts the orchestrator)
        await self.subscribe(self.config.market_channel, self._on_tick, event_type=bytes)
        if self.config.redis_url:
            self.spawn(self._from_redis(), "redis-ticks")
        self.runner_task = self.spawn(self._runner(), "runner")

    async def _on_tick(self, data: bytes, meta: EventMeta) -> None:
        self._fed(self.buffer.feed(data, meta.subject))

    def _fed(self, tick: MarketTick | None) -> None:
        if tick is not None:
            self.tracker.tick(tick)

    async def _from_redis(self) -> None:
        async for data in redis_messages(self.config.redis_url, self.config.market_channel,
                                         self.redis_state):
            self._fed(self.buffer.feed(data, f"redis {self.config.market_channel}"))

    async def on_stop(self) -> None:
        # the runner first: left running, it could start a worker after the close below
        task = getattr(self, "runner_task", None)
        if isinstance(task, asyncio.Task):
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        for r in self.runners.values():
            await r.close()
        self.runners.clear()

    # --- the policy bucket: every replica serves the same slots --------------------------
    async def _join_bucket(self) -> None:
        js = self.ctx.bus.js
        try:
            self.kv = await js.key_value(self.config.policy_bucket)
        except BucketNotFoundError:
            self.kv = await js.create_key_value(bucket=self.config.policy_bucket, history=1,
                                                description="osiris orchestrator policy slots")
        try:
            entry = await self.kv.get("slots")
        except KeyNotFoundError:
            entry = None
        if entry is not None and entry.value:
            self._apply_entry(entry.revision or 0, entry.value)
        elif self.slots.live.variant != "0" or self.slots.shadow is not None:
            await self._share()  # the first replica on a bucket brings what it served before
        self.spawn(self._follow(), "policy-bucket")

    async def _follow(self) -> None:
        """Apply every new revision of the slots; a watch that cannot be made or breaks
        (a JetStream timeout, a missing grant) is retried with backoff: this replica keeps
        serving what it has meanwhile, it never fails for it."""
        assert self.kv is not None
        delay = 1.0
        while True:
            watcher = None
            try:
                watcher = await self.kv.watch("slots")
                delay = 1.0
                async for entry in watcher:
                    if entry is not None and entry.value and entry.operation is None:
                        self._apply_entry(entry.revision or 0, entry.value)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - said, and retried
                self.log.error("policy bucket: watch failed (%r); again in %.0fs", e, delay)
            finally:
                if watcher is not None:
                    with contextlib.suppress(Exception):
                        await watcher.stop()  # type: ignore[no-untyped-call]
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)

    def _apply_entry(self, revision: int, value: bytes) -> None:
        if revision <= self.kv_revision:
            return
        self.kv_revision = revision
        try:
            if self.slots.apply(msgspec.json.decode(value)):
                self.log.warning("policy from the bucket (revision %d): live %s, shadow %s",
                                 revision, self.slots.live.variant,
                                 self.slots.shadow and self.slots.shadow.variant)
        except Exception as e:  # noqa: BLE001 - a bad revision is said, never fatal
            self.log.error("policy bucket revision %d not applied: %r", revision, e)

    async def _share(self) -> None:
        """Put this replica's slots in the bucket (after a control op or a cut)."""
        if self.kv is None:
            return
        try:
            self.kv_revision = max(self.kv_revision, await self.kv.put(
                "slots", msgspec.json.encode(self.slots.state())))
        except Exception as e:  # noqa: BLE001 - this replica serves it anyway; say so
            self.log.error("policy bucket: could not share the slots: %r", e)

    # --- runs --------------------------------------------------------------------------
    def _runner_of(self, policy: Policy) -> PolicyRunner:
        key = (policy.variant, policy.sha256)
        r = self.runners.get(key)
        if r is None:  # the same sha256 is the same code: one worker serves both slots
            r = self.runners[key] = runner_for(policy, self.config.variant_timeout_s,
                                               self.config.variant_memory_mb)
        return r

    async def _close_stale(self) -> None:
        keep = {(p.variant, p.sha256) for p in (self.slots.live, self.slots.shadow)
                if p is not None}
        for key in [k for k in self.runners if k not in keep]:
            await self.runners.pop(key).close()

    async def _runner(self) -> None:
        while True:
            batch = await self.buffer.batches.get()
            # a swap waits for the next run
            live = self._runner_of(self.slots.live)
            shadow = self._runner_of(self.slots.shadow) if self.slots.shadow else None
            result = await self.workflow.run(self.config.query, batch, live, shadow)
            self._note(result)
            self._track(batch[-1], result)
            await self._after_cut(result)
            await self._close_stale()

    async def _after_cut(self, result: RunResult) -> None:
        """A call past its bound rolls its slot back at once, on every replica."""
        changed = False
        if result.cut and self.slots.live.variant == result.policy:
            try:
                old, new = self.slots.rollback()
            except ValueError:
                old, new = self.slots.rollback("0")
            self.log.error("policy rolled back from %s to %s: %s", old, new, result.cut)
            changed = True
        sh = result.shadow or {}
        if sh.get("cut") and self.slots.shadow and self.slots.shadow.variant == sh.get("variant"):
            self.slots.clear_shadow()
            self.log.error("shadow policy %s cleared: %s", sh.get("variant"), sh["cut"])
            changed = True
        if changed:
            await self._share()

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
                         "policy": result.policy,
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

    # --- policy ops (the dgm kernel's, and `osiris dgm rollback`) --------------------------
    @control_op
    async def policy(self, op: PolicyOp) -> PolicyReport:
        c = self.config
        return PolicyReport(
            **self._state_facts(), violations=dict(self.violations),
            outcomes=self.tracker.outcomes(op.args.since),
            config=PolicyRules(query=c.query, ticks_per_proposal=c.ticks_per_proposal,
                               max_length=c.max_length, trade_horizon_bars=c.trade_horizon_bars,
                               risk=msgspec.to_builtins(c.risk)))

    @control_op
    async def policy_shadow(self, op: PolicyShadowOp) -> PolicyState:
        variant, source = op.args.variant, op.args.source
        async with self._policy_change():
            if source is not None and self.config.variant_timeout_s > 0:
                # its module's top level runs bounded first: loading it in-process (and on
                # every replica, through the bucket) can then not hang
                await probe_load(check_variant(variant), source,
                                 self.config.variant_timeout_s, self.config.variant_memory_mb)
            self.slots.set_shadow(variant, source)
            self.log.info("policy %s loaded in shadow beside %s", variant,
                          self.slots.live.variant)
        return PolicyState(**self._state_facts())

    @control_op
    async def policy_clear_shadow(self, op: PolicyClearShadowOp) -> PolicyState:
        async with self._policy_change():
            self.slots.clear_shadow()
        return PolicyState(**self._state_facts())

    @control_op
    async def policy_promote(self, op: PolicyPromoteOp) -> PolicyState:
        async with self._policy_change():
            self.slots.promote(op.args.variant)
            self.log.warning("policy %s is live (previous %s)", self.slots.live.variant,
                             self.slots.previous and self.slots.previous.variant)
        return PolicyState(**self._state_facts())

    @control_op
    async def policy_rollback(self, op: PolicyRollbackOp) -> PolicyState:
        async with self._policy_change():
            old, new = self.slots.rollback(op.args.variant or None)
            self.log.warning("policy rolled back from %s to %s: %s", old, new, op.args.reason)
        return PolicyState(**self._state_facts())

    @contextlib.asynccontextmanager
    async def _policy_change(self) -> AsyncIterator[None]:
        """Share the slots after a change; a bad variant or store is the caller's 400."""
        try:
            yield
            await self._share()
        except PolicyViolation as e:
            raise BadRequest(str(e), field="source") from None
        except ValueError as e:
            raise BadRequest(str(e), field="variant") from None
        except OSError as e:
            raise BadRequest(f"policy store: {e}", field="variant") from None

    def _state_facts(self) -> dict[str, Any]:
        return {**self.slots.facts(), **self.tracker.facts()}

    def facts(self) -> dict[str, Any]:
        return {"market_channel": self.config.market_channel,
                "ticks_per_proposal": self.config.ticks_per_proposal, "runs": dict(self.runs),
                "last_run": self.last_run, **self.buffer.facts(), **self.redis_state,
                "policy": {"live": self.slots.live.variant,
                           "shadow": self.slots.shadow and self.slots.shadow.variant,
                           "previous": self.slots.previous and self.slots.previous.variant,
                           "violations": sum(self.violations.values()),
                           "workers": {f"{k[0]}": {"starts": r.starts, "cuts": r.cuts}
                                       for k, r in self.runners.items()
                                       if isinstance(r, BoundedPolicy)}}}
