"""Planners: given the policy source and a traces summary, propose a unified diff.

Built in: `nop` (the seeds' AZR stub: always the empty diff), `null` (changes a comment only:
a variant that cannot change a decision, to measure false promotions), `mutate` (a seeded,
deterministic change of one `PARAMS` value) and `llm` (hermes is asked for the diff). Other
plugins add theirs with the `register_planners` hook; any process can also answer
`osiris.dgm.plan` itself.
"""

from __future__ import annotations

import ast
import json
import random
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from osiris_core.bus import Bus
from osiris_core.contracts import GenerateReply, GenerateRequest
from osiris_core.subjects import HERMES_GENERATE

from .contracts import PlanReply, PlanRequest
from .diff import make_diff

__all__ = ["PlannerContext", "Planner", "builtin_planners", "collect_planners", "mutate_source"]


@dataclass
class PlannerContext:
    """What a planner may use: the bus (to ask a model) and a timeout."""

    bus: Bus | None
    timeout_s: float = 180.0


Planner = Callable[[PlanRequest, PlannerContext], Awaitable[PlanReply]]

# (low, high, integer?) of each shipped parameter; 0 switches a check off
RANGES: dict[str, tuple[float, float, bool]] = {
    "lookback": (3, 10, True), "min_confidence": (0.3, 0.95, False),
    "min_reward_risk": (0.5, 4.0, False), "max_volatility_pct": (0.1, 3.0, False),
    "stop_vol_mult": (0.25, 4.0, False), "target_rr": (0.5, 5.0, False),
    "trend_filter_pct": (0.05, 3.0, False), "size": (0.1, 1.0, False),
}
NEVER_OFF = frozenset({"size"})
FACTORS = (0.5, 0.8, 1.25, 1.5, 2.0)


def params_lines(source: str) -> dict[str, tuple[int, float]]:
    """PARAMS key → (line number, value), for a PARAMS dict literal written one key a line."""
    tree = ast.parse(source)
    for node in tree.body:
        if (isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "PARAMS"
                                                 for t in node.targets)
                and isinstance(node.value, ast.Dict)):
            out: dict[str, tuple[int, float]] = {}
            for k, v in zip(node.value.keys, node.value.values, strict=True):
                if (isinstance(k, ast.Constant) and isinstance(k.value, str)
                        and isinstance(v, ast.Constant) and isinstance(v.value, (int, float))
                        and not isinstance(v.value, bool) and v.lineno == v.end_lineno):
                    out[k.value] = (v.lineno, float(v.value))
            return out
    return {}


def _new_value(rng: random.Random, key: str, value: float) -> float:
    low, high, integer = RANGES.get(key, (0.0, abs(value) * 4 or 1.0, False))
    if value == 0:
        new = rng.uniform(low, high)
    elif key not in NEVER_OFF and rng.random() < 0.2:
        new = 0.0
    else:
        new = min(high, max(low, value * rng.choice(FACTORS)))
    return float(round(new)) if integer else round(new, 3)


def mutate_source(source: str, seed: int) -> tuple[str, str]:
    """(new source, note): one PARAMS value changed, chosen by `seed` (same seed, same change)."""
    params = params_lines(source)
    if not params:
        return source, "no PARAMS literal to mutate"
    rng = random.Random(seed)
    lines = source.splitlines(keepends=True)
    for _ in range(8):
        key = rng.choice(sorted(params))
        lineno, value = params[key]
        new = _new_value(rng, key, value)
        if new == value:
            continue
        line = lines[lineno - 1]
        literal = repr(int(new)) if RANGES.get(key, (0, 0, False))[2] else repr(new)
        changed = re.sub(r"(:\s*)(-?[0-9][0-9_.eE+-]*)", lambda m, lit=literal: m.group(1) + lit, line,
                         count=1)
        if changed != line:
            lines[lineno - 1] = changed
            return "".join(lines), f"{key}: {value:g} → {new:g}"
    return source, "no mutation changed a value"


async def nop(req: PlanRequest, ctx: PlannerContext) -> PlanReply:
    """The seeds' AZR planner stub: no change."""
    return PlanReply(diff="", planner=req.planner, note="no-op")


async def null(req: PlanRequest, ctx: PlannerContext) -> PlanReply:
    """A change that cannot alter a decision (a comment): for the false-promotion rate."""
    src = req.policy_source
    marker = "# calibration: "
    lines = [ln for ln in src.splitlines(keepends=True) if not ln.startswith(marker)]
    new = "".join(lines).rstrip("\n") + f"\n{marker}{req.seed}\n"
    return PlanReply(diff=make_diff(src, new, req.path), planner=req.planner,
                     note=f"comment only (seed {req.seed})")


async def mutate(req: PlanRequest, ctx: PlannerContext) -> PlanReply:
    """One seeded PARAMS mutation."""
    new, note = mutate_source(req.policy_source, req.seed)
    return PlanReply(diff=make_diff(req.policy_source, new, req.path), planner=req.planner,
                     note=note)


LLM_INSTRUCTIONS = """You improve a trading policy written in Python. Reply with ONLY a unified
diff against the file {path} (headers '--- a/{path}' and '+++ b/{path}', then @@ hunks) that
should raise the backtest reward (sum of returns minus drawdown, minus penalties). Change
PARAMS values or the logic of summarise, prompt, postprocess or gate. Keep the
record("gate", ...) line. Only `math` may be imported."""


def extract_diff(text: str) -> str:
    """The diff part of a model's reply (a fenced block, or from the first '--- ' line)."""
    fence = re.search(r"```(?:diff|patch)?\n(.*?)```", text, re.S)
    if fence:
        return fence.group(1)
    at = text.find("--- ")
    return text[at:] if at >= 0 else text


async def llm(req: PlanRequest, ctx: PlannerContext) -> PlanReply:
    """hermes writes the diff; the kernel rejects a malformed one with the reason."""
    if ctx.bus is None:
        raise RuntimeError("the llm planner needs the bus (hermes)")
    prompt = (LLM_INSTRUCTIONS.format(path=req.path) + "\n\nRecent performance:\n"
              + json.dumps(req.traces, sort_keys=True, default=str)[:2000]
              + f"\n\nCurrent {req.path}:\n{req.policy_source}\n\nDiff:\n")
    reply: GenerateReply = await ctx.bus.request(
        HERMES_GENERATE, GenerateRequest(prompt=prompt, max_length=400, temperature=0.0),
        reply_type=GenerateReply, timeout=ctx.timeout_s)
    text = reply.generated_text
    return PlanReply(diff=extract_diff(text), planner=req.planner,
                     note=f"hermes replied {len(text)} characters")


def builtin_planners() -> dict[str, Planner]:
    return {"nop": nop, "null": null, "mutate": mutate, "llm": llm}


def collect_planners() -> tuple[dict[str, Planner], list[str]]:
    """The built-in planners plus those installed plugins register; (planners, problems)."""
    from osiris_core.plugins import load_plugins

    planners = builtin_planners()
    problems: list[str] = []
    loaded = load_plugins()

    def kwargs(rec: Any) -> dict[str, Any]:
        def register(name: str, planner: Planner) -> None:
            if not isinstance(name, str) or not name or not callable(planner):
                raise TypeError(f"register_planners: bad planner {name!r}")
            planners[name] = planner

        return {"register": register}

    loaded.call_each("register_planners", kwargs)
    for rec in loaded.records.values():
        if rec.error and "register_planners" in rec.error:
            problems.append(f"{rec.name}: {rec.error}")
    return planners, problems
