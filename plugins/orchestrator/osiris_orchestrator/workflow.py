"""The policy workflow of seed 002, on the bus:

query_market → generate_proposal (phi3) → risk_management (gate; advice.generated) →
[approved] evaluate_proposal (hermes) → publish_events (phi3.proposal.created/assessed,
optional TTS) → log_run (osiris.runs.completed).

Each step's outcome and timing goes into the RunRecord. A failing step ends the run with a
recorded error (every model call has a timeout), never a hang; `run()` itself never raises.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import msgspec

from osiris_core.bus import Bus
from osiris_core.contracts import (
    Advice,
    GenerateReply,
    GenerateRequest,
    MarketTick,
    ProposalAssessed,
    ProposalCreated,
    ProposeReply,
    RunRecord,
    RunStep,
    TradeProposal,
    TtsRequest,
)
from osiris_core.errors import ServiceError
from osiris_core.subjects import (
    ADVICE_GENERATED,
    HERMES_GENERATE,
    PHI3_GENERATE,
    PROPOSAL_ASSESSED,
    PROPOSAL_CREATED,
    RUNS_COMPLETED,
    TTS_SPEAK,
)

from .config import OrchestratorConfig, RiskConfig

__all__ = ["RunResult", "Workflow", "risk_gate", "summarise"]

log = logging.getLogger("osiris.orchestrator")
T = TypeVar("T")
_enc = msgspec.json.Encoder()


class RunResult(msgspec.Struct, kw_only=True):
    """What one workflow run produced (printed by `osiris orchestrate`)."""

    run: RunRecord
    transaction_id: str | None = None
    market: dict[str, Any] | None = None
    phi3_proposal: TradeProposal | None = None
    advice: Advice | None = None
    hermes_assessment: str | None = None


class StepFailed(Exception):
    pass


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def summarise(ticks: list[MarketTick]) -> dict[str, Any]:
    """query_market: the buffer as a few numbers a model can read."""
    if not ticks:
        return {"ticks": 0}
    closes = [t.close for t in ticks]
    rets = [math.log(closes[i] / closes[i - 1]) for i in range(1, len(closes)) if closes[i - 1] > 0]
    mean = sum(rets) / len(rets) if rets else 0.0
    vol = math.sqrt(sum((r - mean) ** 2 for r in rets) / len(rets)) if rets else 0.0
    first, last = ticks[0], ticks[-1]
    return {
        "ticks": len(ticks), "symbol": last.symbol, "from": first.timestamp, "to": last.timestamp,
        "open": first.open, "close": last.close, "high": max(t.high for t in ticks),
        "low": min(t.low for t in ticks), "volume": sum(t.volume for t in ticks),
        "return_pct": round(100.0 * (last.close / first.open - 1.0), 4) if first.open else 0.0,
        "volatility_pct": round(100.0 * vol, 4),
    }


def market_text(m: dict[str, Any]) -> str:
    if not m.get("ticks"):
        return "no market data buffered."
    return (f"{m['symbol']} {m['ticks']} bars {m['from']} to {m['to']}: open {m['open']:.2f}, "
            f"close {m['close']:.2f}, high {m['high']:.2f}, low {m['low']:.2f}, return "
            f"{m['return_pct']:.2f}%, volatility {m['volatility_pct']:.2f}% per bar.")


def risk_gate(p: TradeProposal, limits: RiskConfig) -> tuple[bool, list[str]]:
    """(approved, reasons): every violated limit is named with the value and the limit."""
    bad: list[str] = []
    if not limits.min_stop_pct <= p.new_stop_pct <= limits.max_stop_pct:
        bad.append(f"new_stop_pct {p.new_stop_pct:g} outside "
                   f"[{limits.min_stop_pct:g}, {limits.max_stop_pct:g}]")
    if p.new_target_pct > limits.max_target_pct:
        bad.append(f"new_target_pct {p.new_target_pct:g} above max {limits.max_target_pct:g}")
    if p.confidence < limits.min_confidence:
        bad.append(f"confidence {p.confidence:g} below min {limits.min_confidence:g}")
    if p.new_stop_pct > 0 and p.new_target_pct / p.new_stop_pct < limits.min_reward_risk:
        bad.append(f"reward/risk {p.new_target_pct / p.new_stop_pct:.2f} below min "
                   f"{limits.min_reward_risk:g}")
    if limits.allowed_sides and p.side.upper() not in {s.upper() for s in limits.allowed_sides}:
        bad.append(f"side {p.side!r} not in {limits.allowed_sides}")
    if limits.allowed_actions and p.action not in limits.allowed_actions:
        bad.append(f"action {p.action!r} not in {limits.allowed_actions}")
    if limits.allowed_tickers and p.ticker not in limits.allowed_tickers:
        bad.append(f"ticker {p.ticker!r} not in {limits.allowed_tickers}")
    if bad:
        return False, bad
    return True, [f"within limits (stop {p.new_stop_pct:g}%, target {p.new_target_pct:g}%, "
                  f"confidence {p.confidence:g})"]


def proposal_prompt(query: str, market: dict[str, Any]) -> str:
    return f"{query}\nMarket: {market_text(market)}\nAnswer with one JSON trade proposal."


def assessment_prompt(p: TradeProposal, market: dict[str, Any] | None = None) -> str:
    where = f"Market: {market_text(market)}\n" if market else ""
    return (f"{where}Assess this trade proposal in plain English (risks, sizing, timing):\n"
            f"{_enc.encode(p).decode()}\nAssessment:")


class Workflow:
    """One workflow per call of `run`; shares nothing between runs but the bus and config."""

    def __init__(self, bus: Bus, config: OrchestratorConfig) -> None:
        self.bus = bus
        self.config = config

    async def _phi3(self, prompt: str) -> TradeProposal:
        reply: TradeProposal = await self.bus.request(
            PHI3_GENERATE, GenerateRequest(prompt=prompt, max_length=self.config.max_length),
            reply_type=TradeProposal, timeout=self.config.phi3_timeout_s)
        return reply

    async def _hermes(self, prompt: str) -> str:
        reply: GenerateReply = await self.bus.request(
            HERMES_GENERATE,
            GenerateRequest(prompt=prompt, max_length=self.config.assess_max_length),
            reply_type=GenerateReply, timeout=self.config.hermes_timeout_s)
        return reply.generated_text.strip()

    async def run(self, query: str, ticks: list[MarketTick]) -> RunResult:
        """Run the whole workflow; failures end it with a recorded error."""
        run_id = uuid.uuid4().hex
        tid = str(uuid.uuid4())
        started = now_iso()
        steps: list[RunStep] = []
        out = RunResult(run=RunRecord(run_id=run_id, query=query, status="running",
                                      started=started, finished=started, transaction_id=tid),
                        transaction_id=tid)
        status, error = "ok", None

        async def step(name: str, fn: Callable[[], Awaitable[T]], *, fatal: bool = True) -> T:
            t0, wall = time.perf_counter(), now_iso()
            try:
                value = await fn()
            except Exception as e:  # noqa: BLE001 - every failure becomes a recorded outcome
                msg = e.message if isinstance(e, ServiceError) else f"{type(e).__name__}: {e}"
                steps.append(RunStep(name=name, status="error", started=wall,
                                     duration_ms=_ms(t0), error=msg))
                log.warning("run %s: step %s failed: %s", run_id, name, msg)
                if fatal:
                    raise StepFailed(f"{name}: {msg}") from None
                return None  # type: ignore[return-value]
            steps.append(RunStep(name=name, status="ok", started=wall, duration_ms=_ms(t0)))
            return value

        try:
            async def query_market() -> dict[str, Any]:
                return summarise(ticks)

            out.market = await step("query_market", query_market)
            market = out.market
            out.phi3_proposal = await step(
                "generate_proposal", lambda: self._phi3(proposal_prompt(query, market)))
            proposal = out.phi3_proposal

            async def risk_management() -> Advice:
                approved, reasons = risk_gate(proposal, self.config.risk)
                advice = Advice(transaction_id=tid, timestamp=now_iso(), approved=approved,
                                reasons=reasons, phi3_proposal=proposal)
                await self.bus.publish(ADVICE_GENERATED, advice, msg_id=f"{tid}:advice")
                return advice

            out.advice = await step("risk_management", risk_management)
            if out.advice.approved:
                out.hermes_assessment = await step(
                    "evaluate_proposal", lambda: self._hermes(assessment_prompt(proposal, market)))
            else:
                status = "rejected"
                steps.append(RunStep(name="evaluate_proposal", status="skipped",
                                     started=now_iso(), duration_ms=0.0,
                                     error="risk gate: " + "; ".join(out.advice.reasons)))

            async def publish_events() -> None:
                ts = now_iso()
                await self.bus.publish(PROPOSAL_CREATED, ProposalCreated(
                    transaction_id=tid, timestamp=ts, prompt=proposal_prompt(query, market),
                    phi3_proposal=proposal), msg_id=tid)
                if out.hermes_assessment is not None:
                    await self.bus.publish(PROPOSAL_ASSESSED, ProposalAssessed(
                        transaction_id=tid, timestamp=ts, phi3_proposal=proposal,
                        hermes_assessment=out.hermes_assessment), msg_id=f"{tid}:assessed")

            await step("publish_events", publish_events)
            if self.config.speak and out.hermes_assessment:
                text = out.hermes_assessment

                async def speak() -> None:
                    await self.bus.request(TTS_SPEAK, TtsRequest(text=text[:500]),
                                           reply_type=bytes, timeout=self.config.tts_timeout_s)

                await step("speak", speak, fatal=False)
        except StepFailed as e:
            status, error = "error", str(e)
        out.run = RunRecord(run_id=run_id, query=query, status=status, started=started,
                            finished=now_iso(), steps=steps, transaction_id=tid, error=error)
        try:
            await self.bus.publish(RUNS_COMPLETED, out.run, msg_id=run_id)
        except Exception as e:  # noqa: BLE001 - the caller still gets the result
            log.error("run %s: could not log the run: %r", run_id, e)
            out.run = msgspec.structs.replace(
                out.run, error=(error + "; " if error else "") + f"log_run: {e!r}")
        return out

    async def propose(self, prompt: str, max_length: int) -> ProposeReply:
        """`/propose_trade_adjustments/`: phi3 proposal + hermes assessment, both published."""
        tid = str(uuid.uuid4())
        proposal: TradeProposal = await self.bus.request(
            PHI3_GENERATE, GenerateRequest(prompt=prompt, max_length=max_length),
            reply_type=TradeProposal, timeout=self.config.phi3_timeout_s)
        ts = now_iso()
        await self.bus.publish(PROPOSAL_CREATED, ProposalCreated(
            transaction_id=tid, timestamp=ts, prompt=prompt, phi3_proposal=proposal), msg_id=tid)
        assessment = await self._hermes(assessment_prompt(proposal))
        await self.bus.publish(PROPOSAL_ASSESSED, ProposalAssessed(
            transaction_id=tid, timestamp=now_iso(), phi3_proposal=proposal,
            hermes_assessment=assessment), msg_id=f"{tid}:assessed")
        return ProposeReply(transaction_id=tid, phi3_proposal=proposal,
                            hermes_assessment=assessment)


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000.0, 3)
