"""The learning loop, proven end to end on a house-policy set through the real actors.

phi3 (base model) answers every prompt of the set — its proposals are stored as the
orchestrator stores them (`phi3.proposal.created`) — the house's corrections arrive on
`osiris.feedback.submit`, the trainer trains on the training corrections and its gate scores
the candidate where phi3 serves on the held-out ones, the adapter is published and phi3
hot-loads it; then phi3 answers the held-out prompts again through `osiris.phi3.generate`,
as any user's request. `bench/learning.py` prints what this measures; the real-model test
tier asserts it.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import msgspec

from osiris_contracts.messages import (
    FeedbackAck,
    GenerateRequest,
    ProposalCreated,
    StoreQuery,
    TradeProposal,
)
from osiris_contracts.store import PAGE_ROWS, read_rows
from osiris_contracts.subjects import FEEDBACK_SUBMIT, PHI3_GENERATE, PROPOSAL_CREATED
from osiris_core.nats.bus import Bus
from osiris_core.protocol import StatusOp

from .contracts import TRAINER_TRAIN, TrainRequest, TrainResult
from .houseset import load_rows
from .stats import Scored


@dataclass
class LoopResult:
    """What the loop measured: the trainer's result (with its held-out report) and phi3's
    served proposals for the held-out prompts before and after the adapter."""

    train: TrainResult
    served_before: list[TradeProposal]
    served_after: list[TradeProposal]
    held_out: list[TradeProposal]
    timings_s: dict[str, float] = field(default_factory=dict)

    def served(self, proposals: list[TradeProposal]) -> Scored:
        """The decision fields of `proposals` against the held-out corrections."""
        return Scored.of(proposals, self.held_out)


async def _propose(bus: Bus, prompt: str, timeout: float) -> TradeProposal:
    reply: TradeProposal = await bus.request(
        PHI3_GENERATE, GenerateRequest(prompt=prompt, max_length=256), reply_type=TradeProposal,
        timeout=timeout)
    return reply


async def _wait_rows(bus: Bus, table: str, n: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        rows = await read_rows(bus, StoreQuery(table=table, limit=PAGE_ROWS), max_rows=n,
                               timeout=10)
        if len(rows) >= n:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{table}: {len(rows)} of {n} rows stored after {timeout}s")
        await asyncio.sleep(0.1)


async def _phi3_adapter(bus: Bus) -> Any:
    return (await bus.control("phi3", StatusOp(), timeout=30)).status.facts.get("adapter")


async def run_loop(bus: Bus, rows: list[dict[str, Any]] | None = None, *,
                   timeout: float = 1200.0, say: Any = lambda _m: None) -> LoopResult:
    """Drive the whole loop against running feedback, phi3 and trainer actors, on `rows`
    of a house set (default: the committed 40-row set)."""
    rows = load_rows() if rows is None else rows
    held = [r for r in rows if r["split"] == "eval"]
    t: dict[str, float] = {}
    t0 = time.perf_counter()
    say(f"phi3 answers the {len(rows)} house-set prompts (base model)")
    served: dict[str, TradeProposal] = {}
    for i, r in enumerate(rows):
        p = await _propose(bus, r["prompt"], 120)
        served[r["id"]] = p
        await bus.publish(PROPOSAL_CREATED, ProposalCreated(
            transaction_id=r["id"], timestamp=f"2026-12-01T00:{i // 60:02d}:{i % 60:02d}+00:00",
            prompt=r["prompt"], phi3_proposal=p), msg_id=r["id"])
    await _wait_rows(bus, "proposals", len(rows), 60)
    t["propose_base"] = time.perf_counter() - t0
    say("the house sends its corrections")
    for i, r in enumerate(rows):
        ack = await bus.request(FEEDBACK_SUBMIT, {
            "transaction_id": r["id"], "feedback_id": r["id"], "feedback_type": "correction",
            "timestamp": f"2026-12-01T01:{i // 60:02d}:{i % 60:02d}+00:00",
            "corrected_proposal": r["correction"]}, reply_type=FeedbackAck, timeout=30)
        if not ack.transaction_known:
            raise RuntimeError(f"{r['id']}: the feedback store does not know the proposal")
    await _wait_rows(bus, "feedback", len(rows), 60)
    t1 = time.perf_counter()
    say(f"the trainer trains on {len(rows) - len(held)} and its gate scores the "
        f"{len(held)} held out where phi3 serves")
    res: TrainResult = await bus.request(TRAINER_TRAIN, TrainRequest(force=True),
                                         reply_type=TrainResult, timeout=timeout)
    t["train"] = time.perf_counter() - t1
    after: list[TradeProposal] = []
    if res.published:
        deadline = time.monotonic() + 60
        while await _phi3_adapter(bus) != res.version:
            if time.monotonic() > deadline:
                raise TimeoutError(f"phi3 did not load adapter {res.version}")
            await asyncio.sleep(0.1)
        t2 = time.perf_counter()
        after = [await _propose(bus, r["prompt"], 120) for r in held]
        t["propose_adapter"] = time.perf_counter() - t2
    return LoopResult(train=res, served_before=[served[r["id"]] for r in held],
                      served_after=after,
                      held_out=[msgspec.convert(r["correction"], TradeProposal) for r in held],
                      timings_s=t)
