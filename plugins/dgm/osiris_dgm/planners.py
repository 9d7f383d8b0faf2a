"""Planners: given the policy source and a traces summary, propose a unified diff.

Built in: `nop` (the seeds' AZR stub: always the empty diff), `null` (changes a comment only:
a variant that cannot change a decision, to measure false promotions), `mutate` (a seeded,
deterministic change of one `PARAMS` value), `llm` (phi3 chooses an edit in the parent's typed
edit language under its grammar, compiled to the diff) and `llm_diff` (hermes is asked for a
free-form diff, which a small model rarely gets right). Other
plugins add theirs with the `register_planners` hook; any process can also answer
`osiris.dgm.plan` itself. (`auto` is not here: the kernel's bandit chooses one of these per
iteration.) Model-backed planners ask through `PlannerContext.ask`, whose reply cache makes a
run replay bit for bit.
"""

from __future__ import annotations

import json
import logging
import random
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec
from osiris_orchestrator.policy import sha256
from osiris_phi3.contracts import MAX_SEED, PHI3_GUIDED, GuidedReply, GuidedRequest

from osiris_contracts.messages import GenerateReply, GenerateRequest
from osiris_contracts.models import ModelFacts
from osiris_contracts.subjects import HERMES_GENERATE
from osiris_core.nats.bus import Bus
from osiris_core.protocol import StatusOp
from osiris_core.subjects import Subject

from .archive import ReplyCache
from .contracts import PlanReply, PlanRequest
from .diff import make_diff
from .edits import (
    CHECK_FIELDS,
    FACTORS,
    NEVER_OFF,
    RANGES,
    EditError,
    EditSpace,
    params_lines,
    with_value,
)

__all__ = ["PlannerContext", "Planner", "builtin_planners", "collect_planners", "edit_prompt",
           "mutate_source"]

log = logging.getLogger("osiris.dgm")


R = TypeVar("R")


@dataclass
class PlannerContext:
    """What a planner may use: the bus (to ask a model), a timeout, for `llm` how many
    candidates it samples at which temperature, and the reply cache `ask` goes through."""

    bus: Bus | None
    timeout_s: float = 180.0
    candidates: int = 3
    temperature: float = 0.8
    max_tokens: int = 96
    cache: ReplyCache | None = None
    """Model replies by (subject, request, model, adapter), kept under data_dir/dgm."""
    hits: int = 0
    misses: int = 0

    async def _model(self, actor: str) -> str:
        """The model and adapter `actor` serves now (part of the cache key)."""
        assert self.bus is not None
        reply = await self.bus.control(actor, StatusOp(), timeout=10)
        m = ModelFacts.read(reply.status.facts)
        return f"{m.model_path}|{m.adapter}"

    async def ask(self, subject: Subject, request: msgspec.Struct, reply_type: type[R]) -> R:
        """Ask a model actor over `subject`, through the reply cache: the key is the whole
        request (prompt, grammar, seed, temperature, adapter asked for …) with the model and
        adapter the actor serves, so a repeated request replays the same reply, bit for bit,
        and a new model or adapter asks again."""
        if self.bus is None:
            raise RuntimeError(f"{subject.name} needs the bus")
        key = ""
        if self.cache is not None:
            ident = await self._model(subject.owner)
            key = sha256(json.dumps([subject.name, ident,
                                     msgspec.json.encode(request).decode()]))
            hit = self.cache.replies.get(key)
            if hit is not None:
                self.hits += 1
                return msgspec.convert(hit, reply_type)
        reply = await self.bus.request(subject, request, reply_type=reply_type,
                                       timeout=self.timeout_s)
        self.misses += 1
        if self.cache is not None:
            self.cache.put(key, msgspec.to_builtins(reply))
        return reply


Planner = Callable[[PlanRequest, PlannerContext], Awaitable[PlanReply]]

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
        changed = with_value(line, literal)
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


async def llm_diff(req: PlanRequest, ctx: PlannerContext) -> PlanReply:
    """hermes writes a free-form diff; the kernel rejects a malformed one with the reason."""
    if ctx.bus is None:
        raise RuntimeError("the llm_diff planner needs the bus (hermes)")
    traces = {k: v for k, v in req.traces.items() if k != "archive_sha256"}
    prompt = (LLM_INSTRUCTIONS.format(path=req.path) + "\n\nRecent performance:\n"
              + json.dumps(traces, sort_keys=True, default=str)[:2000]
              + f"\n\nCurrent {req.path}:\n{req.policy_source}\n\nDiff:\n")
    reply = await ctx.ask(HERMES_GENERATE,
                          GenerateRequest(prompt=prompt, max_length=400, temperature=0.0),
                          GenerateReply)
    text = reply.generated_text
    return PlanReply(diff=extract_diff(text), planner=req.planner,
                     note=f"hermes replied {len(text)} characters")


EDIT_SYSTEM = "Tune a trading policy for a higher backtest reward: 1 or 2 edits, then 'why: '."
EDIT_HELP = "Edits: scale{KEY, FACTOR}; set{KEY, VALUE}; off{KEY}{check}. Two: 'A; B'."
CHECK_HELP = ("; add_check{FIELD < NUMBER} or > (trade only if true), FIELD one of "
              + ", ".join(CHECK_FIELDS))
RECENT_EDITS = 4


def _r(x: Any, digits: int = 2) -> str:
    return f"{x:.{digits}f}" if isinstance(x, (int, float)) else "none"


def edit_prompt(space: EditSpace, traces: dict[str, Any]) -> tuple[str, str]:
    """(system, user prompt) for the `llm` planner, small enough for a small model (about
    300 tokens): the PARAMS table with ranges, the parent's rewards, and the last edits with
    their outcomes, worst first (FunSearch shows earlier programs in ascending score)."""
    lines = ["PARAMS now [range] (0 switches a check off):", space.table(),
             EDIT_HELP.replace("{check}", CHECK_HELP if "check" in space.slots else ""),
             f"Reward now {_r(traces.get('parent_reward'))}, by window: "
             + " ".join(_r(x, 1) for x in traces.get("parent_sub_rewards") or [])]
    recent = list(traces.get("recent_edits") or [])[:RECENT_EDITS]
    if recent:
        recent.sort(key=lambda e: (e.get("reward") is not None, e.get("reward") or 0.0))
        lines.append("Earlier edits, worst first:")
        for e in recent:
            how = (f"reward {_r(e.get('reward'))}, {e.get('decision')}"
                   if e.get("reward") is not None
                   else f"{e.get('decision')}: {str(e.get('reason', '')).split(':')[0][:40]}")
            lines.append(f"{str(e.get('edit', ''))[:90]} -> {how}")
    lines.append("Edit:")
    return EDIT_SYSTEM, "\n".join(lines)


async def llm(req: PlanRequest, ctx: PlannerContext) -> PlanReply:
    """phi3 writes an edit in the parent's edit language (its grammar enforced), sampled at
    the request's seed, seed+1, … up to `ctx.candidates` times; the first edit whose compiled
    source is not archived yet becomes the diff. When every valid one is a duplicate, a
    seeded `mutate` change is proposed instead (said in the note and the log)."""
    if ctx.bus is None:
        raise RuntimeError("the llm planner needs the bus (phi3)")
    space = EditSpace.from_source(req.policy_source)
    grammar = space.grammar()
    system, prompt = edit_prompt(space, req.traces)
    archived = set(req.traces.get("archive_sha256") or [])
    seen: set[str] = set()
    invalid: list[str] = []
    duplicates = 0
    k = max(1, ctx.candidates)
    for i in range(k):
        seed = (req.seed + i) % (MAX_SEED + 1)
        reply = await ctx.ask(
            PHI3_GUIDED, GuidedRequest(prompt=prompt, system=system, guidance="lark_grammar",
                                       grammar=grammar, max_length=ctx.max_tokens,
                                       temperature=ctx.temperature, seed=seed),
            GuidedReply)
        try:  # the grammar admits only edits that compile; a source written otherwise
            # than the language expects (e.g. `.5`) is one bad candidate, not a failed plan
            edit = space.parse(reply.generated_text)
            new, diff = space.diff(req.policy_source, edit, req.path)
        except EditError as e:
            invalid.append(f"seed {seed} ({reply.finish_reason}): {e}")
            continue
        digest = sha256(new)
        if digest in archived or digest in seen:
            duplicates += 1
            seen.add(digest)
            continue
        return PlanReply(diff=diff, planner=req.planner, why=edit.why,
                         note=(f"{edit.text} (why: {edit.why}) [seed {seed}, candidate {i + 1}/"
                               f"{k}, {duplicates} duplicate, {len(invalid)} invalid, prompt "
                               f"{reply.usage.get('prompt_tokens')} tokens]"))
    if not duplicates:
        raise RuntimeError(f"none of {k} replies was an edit: {'; '.join(invalid)[:400]}")
    new, note = mutate_source(req.policy_source, req.seed)
    log.warning("dgm llm planner: all %d valid candidates of %d are already archived: fell "
                "back to mutate (%s)", duplicates, k, note)
    return PlanReply(diff=make_diff(req.policy_source, new, req.path), planner=req.planner,
                     note=f"mutate fallback: {note} (all {duplicates} valid llm candidates of "
                          f"{k} were already archived)")


def builtin_planners() -> dict[str, Planner]:
    return {"nop": nop, "null": null, "mutate": mutate, "llm": llm, "llm_diff": llm_diff}


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
