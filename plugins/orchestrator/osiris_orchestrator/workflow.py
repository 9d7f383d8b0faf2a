"""The policy workflow of seed 002, on the bus:

query_market → generate_proposal (phi3) → risk_management (gate; advice.generated) →
[approved] evaluate_proposal (hermes) → publish_events (phi3.proposal.created/assessed,
optional TTS) → log_run (osiris.runs.completed).

Each step's outcome and timing goes into the RunRecord. A failing step ends the run with a
recorded error (every model call has a timeout), never a hang; `run()` itself never raises.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec

from osiris_contracts.messages import (
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
    now_iso,
)
from osiris_contracts.subjects import (
    ADVICE_GENERATED,
    HERMES_GENERATE,
    PHI3_GENERATE,
    PROPOSAL_ASSESSED,
    PROPOSAL_CREATED,
    RUNS_COMPLETED,
    TTS_SPEAK,
)
from osiris_core.errors import ServiceError
from osiris_core.nats.bus import Bus

from .bounded import InProcessPolicy, PolicyCut, PolicyRunner
from .config import OrchestratorConfig
from .limits import risk_gate
from .policy import Policy, PolicyViolation, default_source, load_policy

__all__ = ["RunResult", "Workflow", "risk_gate", "summarise"]

TRANSACTION_NS = uuid.UUID("6f1d0c44-2b1e-4c55-9a43-0d6a3f0e7b21")
"""Namespace of transaction ids derived from request ids."""
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
    policy: str | None = None
    """The policy variant that decided this run."""
    size: float | None = None
    """The position size the policy gave an approved proposal."""
    entry: float | None = None
    """The last close the decision saw (where a position would open)."""
    shadow: dict[str, Any] | None = None
    """The shadow policy's decision on the same ticks (logged, never published)."""
    violation: str | None = None
    """What the policy did wrong, when the run failed because of it."""
    adjusted: TradeProposal | None = None
    """The proposal as the policy post-processed it: what the gate judged and a position
    would be opened on (`phi3_proposal` stays phi3's own reply)."""
    cut: str | None = None
    """The live policy's call was cut (past its time or memory bound): the violation."""


class StepFailed(Exception):
    pass


def default_policy() -> Policy:
    """Variant 0, loaded once (for `proposal_prompt` and runs without a policy of their own)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = load_policy("0", default_source())
    return _DEFAULT


_DEFAULT: Policy | None = None


def summarise(ticks: list[MarketTick]) -> dict[str, Any]:
    """query_market as variant 0 does it."""
    return default_policy().summarise(ticks)


def market_text(m: dict[str, Any]) -> str:
    """A market summary in one line (JSON when a policy's summary has other keys)."""
    try:
        text = default_policy().module.market_text(m)
        return text if isinstance(text, str) else _enc.encode(m).decode()
    except Exception:  # noqa: BLE001 - a variant's summary may not have variant 0's keys
        return _enc.encode(m).decode()


def proposal_prompt(query: str, market: dict[str, Any]) -> str:
    """generate_proposal's prompt as variant 0 writes it."""
    return default_policy().prompt(query, market)


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

    async def run(self, query: str, ticks: list[MarketTick],
                  policy: Policy | PolicyRunner | None = None,
                  shadow: Policy | PolicyRunner | None = None) -> RunResult:
        """Run the whole workflow; failures end it with a recorded error.

        `policy` decides (summary, prompt, post-processing, gate; variant 0 when None) and the
        operator's `risk` limits apply after it. A `shadow` policy decides on the same ticks
        (and the same phi3 reply when its prompt is the same); its decision is returned in
        `shadow`, never published. A `BoundedPolicy` runs in its worker: a call past its
        bound is cut (`cut`, and the shadow's `cut` key), never a hang.
        """
        policy = _runner(policy or default_policy())
        shadow = _runner(shadow) if shadow is not None else None
        run_id = uuid.uuid4().hex
        tid = str(uuid.uuid4())
        started = now_iso()
        steps: list[RunStep] = []
        out = RunResult(run=RunRecord(run_id=run_id, query=query, status="running",
                                      started=started, finished=started, transaction_id=tid),
                        transaction_id=tid, policy=policy.variant,
                        entry=ticks[-1].close if ticks else None)
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
                try:
                    return await policy.summarise(ticks)
                except PolicyViolation as e:
                    _violated(out, e)
                    raise

            out.market = await step("query_market", query_market)
            market = out.market
            try:
                prompt = await policy.prompt(query, market)
            except PolicyViolation as e:
                _violated(out, e)
                raise
            raw = await step("generate_proposal", lambda: self._phi3(prompt))
            out.phi3_proposal = proposal = raw

            async def risk_management() -> Advice:
                try:
                    decision = await policy.decide(proposal, market)
                except PolicyViolation as e:
                    _violated(out, e)
                    raise
                hard_ok, hard = risk_gate(decision.proposal, self.config.risk)
                approved = decision.approved and hard_ok
                reasons = decision.reasons + (hard if not hard_ok else [])
                if approved:
                    reasons = hard
                out.adjusted = decision.proposal
                out.size = decision.size if approved else None
                advice = Advice(transaction_id=tid, timestamp=now_iso(), approved=approved,
                                reasons=reasons, phi3_proposal=decision.proposal)
                await self.bus.publish(ADVICE_GENERATED, advice, msg_id=f"{tid}:advice")
                return advice

            out.advice = await step("risk_management", risk_management)
            proposal = out.adjusted or raw  # the trade the gate judged (hermes assesses it)
            if shadow is not None:
                out.shadow = await self._shadow(shadow, query, ticks, prompt, raw)
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
                    transaction_id=tid, timestamp=ts, prompt=prompt,
                    phi3_proposal=raw), msg_id=tid)  # phi3's own words: what feedback corrects
                if out.hermes_assessment is not None:
                    await self.bus.publish(PROPOSAL_ASSESSED, ProposalAssessed(
                        transaction_id=tid, timestamp=ts, phi3_proposal=raw,
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
        except PolicyViolation as e:
            _violated(out, e)
            status, error = "error", f"policy {policy.variant}: {e}"
            log.warning("run %s: %s", run_id, error)
        out.run = RunRecord(run_id=run_id, query=query, status=status, started=started,
                            finished=now_iso(), steps=steps, transaction_id=tid, error=error)
        try:
            await self.bus.publish(RUNS_COMPLETED, out.run, msg_id=run_id)
        except Exception as e:  # noqa: BLE001 - the caller still gets the result
            log.error("run %s: could not log the run: %r", run_id, e)
            out.run = msgspec.structs.replace(
                out.run, error=(error + "; " if error else "") + f"log_run: {e!r}")
        return out

    async def _shadow(self, shadow: PolicyRunner, query: str, ticks: list[MarketTick], live_prompt: str,
                      proposal: TradeProposal | None) -> dict[str, Any]:
        """The shadow policy's decision on the same ticks; errors are its own, never the run's."""
        try:
            market = await shadow.summarise(ticks)
            prompt = await shadow.prompt(query, market)
            if prompt != live_prompt or proposal is None:
                proposal = await self._phi3(prompt)
            d = await shadow.decide(proposal, market)
            hard_ok, hard = risk_gate(d.proposal, self.config.risk)
            approved = d.approved and hard_ok
            return {"variant": shadow.variant, "approved": approved, "size": d.size,
                    "reasons": d.reasons + ([] if hard_ok else hard),
                    "proposal": msgspec.structs.asdict(d.proposal)}
        except PolicyViolation as e:
            log.warning("shadow policy %s: %s", shadow.variant, e)
            return {"variant": shadow.variant, "approved": False, "violation": str(e),
                    **({"cut": str(e)} if isinstance(e, PolicyCut) else {})}
        except Exception as e:  # noqa: BLE001 - the shadow never fails a live run
            msg = e.message if isinstance(e, ServiceError) else f"{type(e).__name__}: {e}"
            return {"variant": shadow.variant, "approved": False, "error": msg}

    async def propose(self, prompt: str, max_length: int, *,
                      request_id: str | None = None) -> ProposeReply:
        """`/propose_trade_adjustments/`: phi3 proposal + hermes assessment, both published.
        The transaction id derives from `request_id` when there is one (a retried request
        is the same transaction), else it is fresh."""
        tid = str(uuid.uuid5(TRANSACTION_NS, request_id) if request_id else uuid.uuid4())
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


def _runner(p: Policy | PolicyRunner) -> PolicyRunner:
    return InProcessPolicy(p) if isinstance(p, Policy) else p


def _violated(out: RunResult, e: PolicyViolation) -> None:
    out.violation = str(e)
    if isinstance(e, PolicyCut):
        out.cut = str(e)


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000.0, 3)
