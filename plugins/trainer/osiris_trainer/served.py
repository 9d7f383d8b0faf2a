"""The gate's evidence: held-out corrections scored on the path users are served.

phi3 answers each held-out prompt through `osiris.phi3.score` — its own engine, precision,
prompt, guidance, ticker grounding and decoding — with the adapter in service, with the
candidate in a shadow slot, and (for the report) with no adapter, with few-shot alone; the
best constant answer fitted on the training rows is the floor every one of them must clear.
A candidate is published only when it beats the live adapter there with a paired interval
above zero: a gain on any other path (the trainer's fp32 copy, unguided) may change nothing
users get.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
from osiris_phi3.contracts import MAX_SCORE_ROWS, Decision, ScoreReply, ScoreRequest, ScoreRow

from osiris_contracts.messages import TradeProposal

from .config import STOP_TOLERANCE, TARGET_TOLERANCE
from .dataset import Example
from .evaluate import DECISION_FIELDS
from .stats import Interval, Scored, best_constant, paired_diff_ci

Ask = Callable[[ScoreRequest], Awaitable[ScoreReply]]
Say = Callable[[str], None]

CHUNK = 16
"""Rows per score request: each answers in seconds, so users' requests interleave and the
progress line moves."""

ROWS = {"constant": "best constant", "base": "base (served)", "few_shot": "few-shot (served)",
        "live": "live (served)", "candidate": "candidate (served)",
        "lab_base": "lab base (diagnostic)", "lab": "lab adapter (diagnostic)"}
"""The report's configurations in the order they are printed. `lab_*` are the trainer's own
copy (its precision, greedy, unguided): shown to tell what the served path loses, never used
by the gate."""


def wants(examples: Sequence[Example]) -> list[TradeProposal]:
    return [msgspec.json.decode(e.chosen, type=TradeProposal) for e in examples]


async def decisions(ask: Ask, held: Sequence[Example], *, shots: int, adapter: str = "live",
                    adapter_file: str | None = None, label: str = "",
                    say: Say = lambda _m: None) -> tuple[list[Decision | None], str | None]:
    """What phi3 serves for each held-out example (with its first `shots` few-shot
    corrections), page by page with a progress line per page → the decisions and the
    adapter phi3 scored them with."""
    rows = [ScoreRow(prompt=e.prompt, shots=list(e.shots[:shots])) for e in held]
    out: list[Decision | None] = []
    used: str | None = None
    step = min(CHUNK, MAX_SCORE_ROWS)
    for i in range(0, len(rows), step):
        reply = await ask(ScoreRequest(rows=rows[i:i + step], adapter=adapter,
                                       adapter_file=adapter_file))
        out += reply.decisions
        used = reply.adapter
        say(f"scoring {label or adapter} as served: {len(out)}/{len(rows)}")
    return out, used


async def served_evaluation(ask: Ask, train: Sequence[Example], held: Sequence[Example], *,
                            candidate: str, few_shot: int, report_shots: int,
                            report_few_shot: bool, stop_tolerance: float = STOP_TOLERANCE,
                            target_tolerance: float = TARGET_TOLERANCE,
                            say: Say = lambda _m: None) -> tuple[dict[str, Any], Verdict]:
    """The served report — best constant, base, few-shot alone, live, and the candidate
    (the `.onnx_adapter` file `candidate`, in a shadow slot) — and the gate's verdict. Live
    and candidate read the prompt as phi3 serves it (`few_shot` corrections from the
    training pool, never a held-out one); base reads none."""
    w = wants(held)

    def scored(got: list[Decision | None]) -> Scored:
        return Scored.of(got, w, stop_tolerance=stop_tolerance, target_tolerance=target_tolerance)

    live_got, live_name = await decisions(ask, held, shots=few_shot, label="the live adapter",
                                          say=say)
    live = scored(live_got)
    cand_got, _ = await decisions(ask, held, shots=few_shot, adapter_file=candidate,
                                  label="the candidate", say=say)
    cand = scored(cand_got)
    report: dict[str, Any] = {
        "constant": constant_row(train, held, stop_tolerance=stop_tolerance,
                                 target_tolerance=target_tolerance),
        "live": {**live.to_dict(), "version": live_name}, "candidate": cand.to_dict()}
    if live_name is None and few_shot == 0:
        report["base"] = live.to_dict()  # the same answers: no second pass
    else:
        report["base"] = scored((await decisions(ask, held, shots=0, adapter="base",
                                                 label="the base model", say=say))[0]).to_dict()
    if report_few_shot and live_name is None and few_shot == report_shots:
        report["few_shot"] = {**live.to_dict(), "shots": report_shots}  # the same answers
    elif report_few_shot:
        got, _ = await decisions(ask, held, shots=report_shots, adapter="base",
                                 label="few-shot alone", say=say)
        report["few_shot"] = {**scored(got).to_dict(), "shots": report_shots}
    verdict = gate(live, cand)
    report["gate"] = {"passed": verdict.passed, "reason": verdict.reason,
                      "diff": verdict.diff.to_dict()}
    return report, verdict


def served_metrics(report: dict[str, Any]) -> dict[str, float]:
    """The served numbers as flat metrics (the published event, status, dashboards)."""
    out = {f"served_{k}": report[k]["agreement"]["mean"]
           for k in ("constant", "base", "few_shot", "live", "candidate") if k in report}
    if "candidate" in report:  # phi3's status shows the interval of what it serves
        a = report["candidate"]["agreement"]
        out.update(served_candidate_lo=a["lo"], served_candidate_hi=a["hi"])
    if "gate" in report:
        d = report["gate"]["diff"]
        out.update(served_diff=d["mean"], served_diff_lo=d["lo"], served_diff_hi=d["hi"])
    return out


@dataclass(frozen=True)
class Verdict:
    """The served gate's decision: candidate − live on the held-out rows, with its
    interval, and the reason that names every number that decided."""

    passed: bool
    reason: str
    diff: Interval


def gate(live: Scored, candidate: Scored) -> Verdict:
    """Publish only when the candidate answers at least as often validly and its served
    decision agreement beats the live adapter's with the paired 95 % interval's lower bound
    above zero (few held-out rows cannot clear it: the reason then says so)."""
    diff = paired_diff_ci(candidate.scores(), live.scores())
    vl, vc = sum(live.valid) / len(live.valid), sum(candidate.valid) / len(candidate.valid)
    summary = (f"served decision agreement {live.overall().mean:.0%} → "
               f"{candidate.overall().mean:.0%} on {len(live.valid)} held-out corrections, "
               f"candidate − live {100 * diff.mean:+.1f} points "
               f"[{100 * diff.lo:+.1f}, {100 * diff.hi:+.1f}]")
    bad = []
    if vc < vl:
        bad.append(f"valid replies fell from {vl:.0%} to {vc:.0%}")
    if not diff.lo > 0:
        bad.append("the interval's lower bound is not above zero"
                   + (" (more held-out corrections would narrow it)" if diff.mean > 0 else ""))
    return Verdict(not bad, summary + ("; " + "; ".join(bad) if bad else ""), diff)


def constant_row(train: Sequence[Example], held: Sequence[Example], *,
                 stop_tolerance: float, target_tolerance: float) -> dict[str, Any]:
    """The best constant answer (fitted on the training corrections) scored on `held`."""
    c = best_constant(wants(train), stop_tolerance, target_tolerance)
    s = Scored.of([c] * len(held), wants(held), stop_tolerance=stop_tolerance,
                  target_tolerance=target_tolerance)
    return {**s.to_dict(), "answer": {f: getattr(c, f) for f in DECISION_FIELDS}}


def _pct(i: dict[str, float]) -> str:
    return f"{i['mean']:>4.0%} [{i['lo']:.0%}–{i['hi']:.0%}]"


def served_table(report: dict[str, Any]) -> str:
    """The served report as text: per configuration, valid share, decision agreement with
    its 95 % interval, and agreement per field (what `osiris train --now` and the benches
    print)."""
    short = {"action": "action", "side": "side", "new_stop_pct": "stop",
             "new_target_pct": "target"}
    head = f"  {'configuration':<26} {'n':>4} {'valid':>6}  {'decision fields':<17}"
    lines = [head + "".join(f" {short[f]:>6}" for f in DECISION_FIELDS)]
    for key, label in ROWS.items():
        r = report.get(key)
        if not r:
            continue
        name = label + (f" {r['version']}" if r.get("version") else "")
        lines.append(f"  {name:<26} {r['n']:>4} {r['valid']:>6.0%}  {_pct(r['agreement']):<17}"
                     + "".join(f" {r['fields'][f]['mean']:>6.0%}" for f in DECISION_FIELDS))
    g = report.get("gate")
    if g:
        d = g["diff"]
        lines.append(f"  candidate − live: {100 * d['mean']:+.1f} points "
                     f"[{100 * d['lo']:+.1f}, {100 * d['hi']:+.1f}] → "
                     + ("published" if g["passed"] else "refused"))
    return "\n".join(lines)
