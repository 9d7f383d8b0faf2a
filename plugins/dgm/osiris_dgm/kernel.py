"""The self-improvement kernel: traces → planner → patch → verify → archive → shadow →
promote → monitor → roll back.

One iteration: choose a parent from the archive (DGM-style), ask `osiris.dgm.plan` for a diff,
apply it to a copy of the parent (allow-list enforced), check the source statically, lint it
(stage 1), score it on the cheap window and — only if it holds up there — on the full
held-out window in the sandbox (stage 2), and accept it only when a paired bootstrap over
sub-windows says it beats its parent. An accepted variant that also beats the live one runs in
shadow beside it, is promoted, and is rolled back when its live outcomes fall below the
replaced policy's on the same ticks.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
from osiris_orchestrator.config import OrchestratorConfig
from osiris_orchestrator.contracts import (
    PolicyArgs,
    PolicyClearShadowOp,
    PolicyOp,
    PolicyOutcome,
    PolicyPromoteOp,
    PolicyReport,
    PolicyRollbackArgs,
    PolicyRollbackOp,
    PolicyShadowArgs,
    PolicyShadowOp,
    PolicyState,
    VariantArgs,
)
from osiris_orchestrator.policy import check_source, default_source, sha256
from osiris_phi3.contracts import FewShotOp
from osiris_sim import DEMO_BARS, DEMO_SEED
from osiris_sim.csvdata import load_bars, make_data

from osiris_contracts.messages import GenerateRequest, TradeProposal, now_iso
from osiris_contracts.subjects import PHI3_GENERATE
from osiris_core.errors import BadRequest, ServiceError
from osiris_core.nats.bus import Bus
from osiris_core.protocol import StatusOp

from .archive import Archive, ReplyCache
from .bandit import Bandit
from .canaries import canary_diffs
from .config import DgmConfig
from .contracts import DGM_PLAN, Decision, PlanReply, PlanRequest, Variant
from .diff import PatchError, apply_patch
from .edits import describe_change
from .lint import lint_scores
from .phase import Idle, Monitoring, Phase, Shadow, load_phase
from .reward import Scored, Windows, bootstrap_lower, check_pins, data_sha256, make_windows, score_decisions
from .sandbox import Limits, SandboxResult, isolation, run_sandboxed

__all__ = ["AUTO", "CanaryFailed", "Kernel", "Rejected"]

log = logging.getLogger("osiris.dgm")
POLICY = "policy.py"
AUTO = "auto"
"""The planner name that lets the kernel's bandit choose among `auto_arms`."""
PAID = frozenset({"archived", "accepted", "shadow", "live", "kept"})
"""Decisions of a fully scored child: only these can earn the bandit a gain."""


class Rejected(Exception):
    """A variant that may not go on, with the reason (recorded in the archive)."""


class CanaryFailed(RuntimeError):
    """A known-bad variant was not rejected: the evaluation can no longer be trusted."""


class Kernel:
    def __init__(self, config: DgmConfig, orchestrator: OrchestratorConfig, data_dir: Path,
                 bus: Bus | None, emit: Callable[[str, Variant, str], Awaitable[None]],
                 market_csv: Path) -> None:
        self.cfg = config
        self.orch = orchestrator
        self.dir = data_dir / "dgm"
        self.bus = bus
        self.emit = emit
        self.csv = market_csv
        self.archive = Archive(self.dir)
        self.cache = ReplyCache(self.dir / "replies.jsonl")
        self.lock = asyncio.Lock()
        """One iteration at a time."""
        self.phase_lock = asyncio.Lock()
        """Shadow / promotion / rollback transitions (short: never waits for an iteration)."""
        self.limits = Limits(cpu_s=config.sandbox_cpu_s, wall_s=config.sandbox_wall_s,
                             memory_mb=config.sandbox_memory_mb)
        self.windows: Windows | None = None
        self.sandbox_runs = 0
        """Sandboxed evaluations started (one per variant when phi3's replies are cached)."""
        self._memo: tuple[tuple[str, ...], dict[int, dict[str, Any]]] | None = None
        """The last variant's decisions at every index (its key: id, source, model, data)."""
        self.data_hash = ""
        state = self._state()
        self.iteration = int(state.get("iteration", 0))
        self.phase: Phase = load_phase(state.get("phase"))
        self.progress = ""
        self.model_key = str(state.get("model_key", ""))
        self.started_at = self.iteration
        """The last iteration begun before this kernel started."""
        self.resumed = False
        """Set once the first look at the orchestrator after start has reconciled the phase."""
        self.canary_failed = str(state.get("canary_failed", ""))
        """Why the last canary check failed ('' when it passed): iterations stop until it does."""
        self.canaries: dict[str, str] = {}
        """Each canary's rejection reason at the last check."""
        if AUTO in config.auto_arms:
            raise ValueError("[plugins.dgm] auto_arms may not name auto itself")
        self.bandit = Bandit.from_state(state.get("bandit"), list(config.auto_arms),
                                        config.auto_exploration, config.auto_epsilon,
                                        config.auto_decay)

    # --- state --------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        p = self.dir / "state.json"
        return json.loads(p.read_text()) if p.exists() else {}

    def _save_state(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.dir / "state.json.tmp"
        tmp.write_text(json.dumps({"iteration": self.iteration,
                                   "phase": msgspec.to_builtins(self.phase),
                                   "model_key": self.model_key,
                                   "canary_failed": self.canary_failed,
                                   "bandit": self.bandit.state(),
                                   "orchestrator": msgspec.to_builtins(self.orch),
                                   "dgm": msgspec.to_builtins(self.cfg)}))
        tmp.replace(self.dir / "state.json")

    async def _record(self, kind: str, v: Variant, message: str = "") -> None:
        self.archive.save(v)
        await self.emit(kind, v, message)

    # --- market and pins ----------------------------------------------------------------
    def _market(self) -> Windows:
        """The held-out windows, with the data hash checked against the pinned one."""
        check_pins()
        if not self.csv.is_file() and not self.cfg.market_csv:
            # none configured and no demo market yet: the sim's seeded synthetic series (the
            # very file `osiris demo` writes), so `osiris dgm` works under a plain `osiris run`
            self.csv.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.csv.with_name(self.csv.name + ".tmp")
            make_data(tmp, bars=DEMO_BARS, seed=DEMO_SEED)
            tmp.replace(self.csv)
            log.info("dgm: no market CSV configured: wrote the sim's seeded synthetic series "
                     "(%d bars, seed %d) to %s", DEMO_BARS, DEMO_SEED, self.csv)
        if not self.csv.is_file():
            raise RuntimeError(f"market CSV {self.csv} not found (set [plugins.dgm] market_csv)")
        digest = data_sha256(self.csv)
        pins = self.dir / "pins.json"
        pinned = json.loads(pins.read_text()).get("market_sha256") if pins.exists() else None
        if pinned is None:
            self.dir.mkdir(parents=True, exist_ok=True)
            pins.write_text(json.dumps({"market_csv": str(self.csv), "market_sha256": digest}))
        elif pinned != digest:
            raise RuntimeError(f"market data {self.csv} changed since it was pinned (sha256 "
                               f"{digest[:12]} ≠ {pinned[:12]}): refusing to evaluate; delete "
                               f"{pins} to re-pin (archived rewards then no longer compare)")
        if self.windows is None or digest != self.data_hash:
            bars = load_bars(self.csv, strict=True).bars
            self.windows = make_windows(bars, self.orch.ticks_per_proposal,
                                        self.cfg.holdout_fraction, self.cfg.cheap_fraction,
                                        self.cfg.sub_windows)
            self.data_hash = digest
        return self.windows

    def _bus(self) -> Bus:
        if self.bus is None:
            raise RuntimeError("offline (no bus): phi3, the planners and the orchestrator "
                               "cannot be asked")
        return self.bus

    # --- phi3 replies -------------------------------------------------------------------
    async def _model_key(self) -> str:
        if self.bus is None:
            if not self.model_key:
                raise RuntimeError("no phi3 model key recorded: run an iteration first")
            return self.model_key
        try:
            f = (await self._bus().control("phi3", StatusOp(), timeout=10)).status.facts
            shots = await self._few_shot_digest()
            self.model_key = (f"{f.get('model')}|{f.get('adapter')}|{self.orch.max_length}"
                              + (f"|fs:{shots[:12]}" if shots else ""))
        except ServiceError as e:
            if not self.model_key:
                raise RuntimeError(f"phi3 is not reachable ({e.message}): the backtest needs "
                                   "its replies") from None
        return self.model_key

    async def _few_shot_digest(self) -> str:
        """sha256 of the feedback corrections phi3 prepends to a prompt now ('' for none):
        part of the reply cache's key, since new feedback can change phi3's reply to the
        same prompt. A phi3 without the `few_shot` control op counts as none."""
        try:
            return (await self._bus().control("phi3", FewShotOp(), timeout=10)).result.few_shot_sha256
        except BadRequest:
            return ""

    async def _fill(self, prompts: dict[str, str]) -> None:
        """Ask phi3 (greedy) for each uncached prompt and cache the reply."""
        for n, (key, prompt) in enumerate(sorted(prompts.items()), 1):
            self.progress = f"phi3 replies for new prompts: {n}/{len(prompts)}"
            try:
                proposal: TradeProposal = await self._bus().request(
                    PHI3_GENERATE, GenerateRequest(prompt=prompt,
                                                   max_length=self.orch.max_length,
                                                   temperature=0.0),
                    reply_type=TradeProposal, timeout=self.cfg.phi3_timeout_s)
            except BadRequest as e:
                # phi3 cannot answer this prompt (as a live run would fail): no decision,
                # remembered so the backtest stays deterministic
                self.cache.put(key, {"error": e.message})
                continue
            self.cache.put(key, msgspec.structs.asdict(proposal))

    # --- evaluation ---------------------------------------------------------------------
    async def _sandbox(self, vid: str, source: str, indices: list[int], w: Windows) -> dict[str, Any]:
        batches = {str(k): [msgspec.structs.asdict(b) for b in w.batch(k)] for k in indices}
        req = msgspec.json.encode({"variant": vid, "source": source, "query": self.orch.query,
                                   "model_key": self.model_key, "batches": batches,
                                   "replies": self.cache.replies})
        self.sandbox_runs += 1
        r: SandboxResult = await run_sandboxed(["-m", "osiris_dgm.harness"], req, self.limits)
        if not r.ok:
            why = r.killed or f"exit {r.returncode}"
            tail = r.stderr.strip().splitlines()[-1:] if r.stderr.strip() else []
            raise Rejected(f"sandbox killed the evaluation ({why})" + (f": {tail[0][:300]}"
                                                                        if tail else ""))
        try:
            out = json.loads(r.stdout)
        except ValueError:
            raise Rejected("the sandbox wrote no valid result") from None
        if "load_error" in out:
            raise Rejected(out["load_error"])
        results: dict[str, Any] = out["results"]
        return results

    async def decisions(self, vid: str, source: str, indices: list[int]) -> dict[int, dict[str, Any]]:
        """The variant's decision at each index (phi3 asked for prompts not cached yet).

        One sandbox run decides every index of the held-out window: the cheap window's
        scoring and the full window's then share one interpreter (a second run only when
        phi3 had to be asked for prompts first). phi3 is still asked only for the indices
        requested, so a variant the cascade stops never costs the full window's replies."""
        w = self._market()
        await self._model_key()
        key = (vid, sha256(source), self.model_key, self.data_hash)
        for attempt in range(3):
            memo = self._memo[1] if self._memo and self._memo[0] == key else None
            if memo is None or attempt:
                results = await self._sandbox(vid, source, list(range(len(w.ends))), w)
                memo = {int(k): r for k, r in results.items()}
                self._memo = (key, memo)
            missing = {memo[k]["key"]: memo[k]["prompt"] for k in indices
                       if memo[k].get("missing")}
            if not missing:
                return {k: memo[k] for k in indices}
            if attempt == 2:
                break
            if self.bus is None:
                raise Rejected(f"{len(missing)} phi3 replies are not cached (offline replay)")
            await self._fill(missing)
        raise Rejected("phi3 replies still missing after asking for them")

    async def score(self, vid: str, source: str, full: bool) -> Scored:
        w = self._market()
        indices = list(range(len(w.ends))) if full else list(range(w.cheap))
        decided = await self.decisions(vid, source, indices)
        bad = [(k, d["violation"]) for k, d in sorted(decided.items()) if d.get("violation")]
        scored = score_decisions(w, decided, self.orch.risk, self.orch.trade_horizon_bars,
                                 self.cfg.drawdown_weight, self.cfg.violation_penalty,
                                 w.groups if full else None)
        if bad:
            raise Rejected(f"policy violation at decision {bad[0][0]} ({len(bad)} in all): "
                           f"{bad[0][1]}")
        if scored.violations:
            raise Rejected(f"{scored.violations} decisions came back from the sandbox with "
                           "invalid values")
        return scored

    async def sync_orchestrator(self) -> None:
        """The decision rules the backtest must share with the live orchestrator: its query,
        batch size, model length, horizon and hard limits (asked over its control subject)."""
        try:
            cfg = (await self.policy(since=1 << 62)).config
        except ServiceError as e:
            raise RuntimeError(f"the orchestrator is not reachable ({e.message}): the dgm "
                               "kernel evaluates against its live settings") from None
        if cfg:
            orch = msgspec.convert(msgspec.to_builtins(cfg), OrchestratorConfig)
            if orch.ticks_per_proposal != self.orch.ticks_per_proposal:
                self.windows = None
            self.orch = orch

    # --- the seed -----------------------------------------------------------------------
    async def ensure_seed(self) -> Variant:
        await self.sync_orchestrator()
        seed = self.archive.variants.get("0")
        if seed is None:
            src = default_source()
            seed = Variant(id="0", parent=None, planner="seed", decision="seed",
                           reason="the shipped policy", source_sha256=sha256(src),
                           created=now_iso(), decided=now_iso())
            self.archive.add(seed, src)
        if seed.reward_full is None:
            self.progress = "scoring the seed policy"
            await self.fresh(seed)
            if self.cfg.lint:
                seed.lint = await lint_scores(self.archive.source("0"), self.limits)
            await self._record("archived", seed, "seed policy scored")
        return seed

    def eval_key(self) -> str:
        """phi3's key and every setting a score depends on: scores compare only when equal."""
        c, o = self.cfg, self.orch
        settings = json.dumps([c.holdout_fraction, c.cheap_fraction, c.sub_windows,
                               c.drawdown_weight, c.violation_penalty, o.query,
                               o.ticks_per_proposal, o.trade_horizon_bars,
                               msgspec.to_builtins(o.risk)], sort_keys=True)
        return f"{self.model_key}#{sha256(settings)[:12]}"

    async def fresh(self, v: Variant) -> Variant:
        """`v` scored under the current market data and phi3 model (re-scored when either
        changed since: a child is only ever compared with scores made like its own)."""
        self._market()
        await self._model_key()
        key = self.eval_key()
        if v.reward_full is not None and v.data_sha256 == self.data_hash and v.model_key == key:
            return v
        self.progress = f"re-scoring variant {v.id} under the current data and model"
        src = self.archive.source(v.id)
        full = await self.score(v.id, src, True)
        cheap = await self.score(v.id, src, False)
        v.reward_full, v.reward_cheap = full.reward, cheap.reward
        v.sub_rewards, v.trades = full.sub_rewards, full.trades
        v.data_sha256, v.model_key = self.data_hash, key
        self.archive.save(v)
        return v

    # --- one iteration ------------------------------------------------------------------
    async def traces(self, parent: Variant) -> dict[str, Any]:
        head = await self.policy(since=1 << 62)
        live = await self.policy(since=head.last_outcome - 50)
        outs = live.outcomes[-50:]
        mean = sum(o.live_return for o in outs) / len(outs) if outs else None
        return {"parent": parent.id, "parent_reward": parent.reward_full,
                "parent_sub_rewards": parent.sub_rewards, "parent_trades": parent.trades,
                "live": live.live, "live_outcomes": len(outs),
                "live_mean_return_pct": mean, "live_violations": live.violations,
                "recent_edits": self.recent_edits(),
                "archive_sha256": sorted({v.source_sha256 for v in self.archive.variants.values()
                                          if v.source_sha256})}

    def recent_edits(self, n: int = 5) -> list[dict[str, Any]]:
        """The last `n` changes that reached a source, in the edit language, with their fate
        (a planner shows them to its model; `archive_sha256` lets it skip known sources)."""
        out: list[dict[str, Any]] = []
        for v in sorted(self.archive.variants.values(),
                        key=lambda v: -int(v.id) if v.id.isdigit() else 0):
            if v.parent is None or not v.source_sha256 or v.decision in ("noop", "pending"):
                continue
            try:
                edit = describe_change(self.archive.source(v.parent), self.archive.source(v.id))
            except OSError:
                continue
            out.append({"edit": edit, "decision": v.decision, "reward": v.reward_full,
                        "reason": v.reason[:120]})
            if len(out) >= n:
                break
        return out

    async def iterate(self, planner: str) -> Variant:
        async with self.lock:
            return await self._iterate(planner)

    async def seed(self) -> Variant:
        async with self.lock:
            return await self.ensure_seed()

    async def _iterate(self, planner: str) -> Variant:
        every = self.cfg.canary_every
        if self.canary_failed or (every > 0 and self.iteration % every == 0):
            await self.ensure_seed()
            await self.check_canaries()
        v = await self._step(planner)
        if planner == AUTO:
            self._reward_arm(v)
        self.progress = (f"idle (iteration {v.iteration}: variant {v.id} from {v.parent}, "
                         f"{v.decision})")
        return v

    async def _step(self, planner: str) -> Variant:
        self._begin_iteration()
        await self.ensure_seed()
        rng = random.Random(self.cfg.seed * 1_000_003 + self.iteration)
        parent = self.archive.choose_parent(rng)
        parent_src = self.archive.source(parent.id)
        planner, v = self._child(parent, planner)
        plan = await self._plan(v, parent, parent_src, planner, rng)
        if plan is None or not await self._evaluate(v, parent, parent_src, plan):
            return v
        live = self.archive.variants.get(self.live_id())
        if v.decision == "accepted" and live is not None:
            await self.fresh(live)  # outside the phase lock: a rollback never waits for phi3
        async with self.phase_lock:
            await self._consider_live(v)
        return v

    def _begin_iteration(self) -> None:
        """Count the iteration; it lifts a rollback's hold on automatic promotion."""
        self.iteration += 1
        if isinstance(self.phase, Idle) and self.phase.hold:
            self.phase = Idle(live=self.phase.live)
        self._save_state()

    def _child(self, parent: Variant, planner: str) -> tuple[str, Variant]:
        """The planner to ask (the bandit's pick for `auto`) and the child's archive row."""
        label = planner
        if planner == AUTO:  # its own rng: the parent and seed stay those of any planner
            planner = self.bandit.choose(random.Random(f"auto/{self.cfg.seed}/{self.iteration}"))
            label = f"{AUTO}:{planner}"
        v = Variant(id=self.archive.next_id(), parent=parent.id, planner=label,
                    iteration=self.iteration, created=now_iso())
        self.progress = f"iteration {self.iteration}: planner {planner} on variant {parent.id}"
        return planner, v

    async def _plan(self, v: Variant, parent: Variant, parent_src: str, planner: str,
                    rng: random.Random) -> PlanReply | None:
        """The planner's change to the parent; None (the child recorded as an error or a
        no-op) when there is nothing to evaluate."""
        try:
            traces = await self.traces(parent)
            plan: PlanReply = await self._bus().request(
                DGM_PLAN, PlanRequest(planner=planner, policy_source=parent_src, traces=traces,
                                      seed=rng.randrange(2**31), path=POLICY),
                reply_type=PlanReply, timeout=self.cfg.planner_timeout_s)
        except ServiceError as e:
            v.decision, v.reason, v.decided = "error", f"planner {planner}: {e.message}", now_iso()
            self.archive.add(v, None)
            await self.emit("rejected", v, v.reason)
            return None
        v.diff = plan.diff[: self.cfg.max_diff_bytes]
        v.why = plan.why[:200]
        if not plan.diff.strip():
            v.decision, v.reason, v.decided = "noop", plan.note or "empty diff", now_iso()
            v.source_sha256 = parent.source_sha256
            self.archive.add(v, None)
            await self.emit("noop", v, "the planner proposed no change")
            return None
        return plan

    async def _evaluate(self, v: Variant, parent: Variant, parent_src: str,
                        plan: PlanReply) -> bool:
        """Apply the diff, check and score the child (`_verify`); False when it was turned
        down (recorded as rejected, or as an error when the evaluation itself failed)."""
        try:
            source = self._apply(parent_src, plan.diff)
            v.source_sha256 = sha256(source)
            self.archive.add(v, source)
            await self.emit("proposed", v, plan.note)
            try:
                await self._verify(v, parent, source)
            except ServiceError as e:
                await self._turn_down(v, "error", f"evaluation: {e.message}")
                return False
        except Rejected as e:
            await self._turn_down(v, "rejected", str(e))
            return False
        return True

    async def _turn_down(self, v: Variant, decision: Decision, reason: str) -> None:
        v.decision, v.reason, v.decided = decision, reason, now_iso()
        await self._record("rejected", v, v.reason)

    def _apply(self, parent_src: str, diff: str) -> str:
        """The parent's source with the diff applied (size and allow-list enforced)."""
        if len(diff.encode()) > self.cfg.max_diff_bytes:
            raise Rejected(f"diff is {len(diff.encode())} bytes (max {self.cfg.max_diff_bytes})")
        try:
            return apply_patch({POLICY: parent_src}, diff, self.cfg.allow)[POLICY]
        except PatchError as e:
            raise Rejected(f"patch rejected: {e}") from None

    # --- integrity canaries -------------------------------------------------------------
    def _canary_set(self, seed_src: str) -> dict[str, str]:
        out = canary_diffs(seed_src)
        if self.cfg.canaries_file:
            extra = json.loads(Path(self.cfg.canaries_file).read_text())
            if not isinstance(extra, dict):
                raise RuntimeError(f"{self.cfg.canaries_file}: not a JSON object of diffs")
            out.update({f"extra:{k}": str(d) for k, d in extra.items()})
        return out

    async def check_canaries(self) -> dict[str, str]:
        """Replay every canary through the evaluation path a planner's diff takes (apply,
        static check, sandboxed scoring of the cheap then the full window); each must be
        rejected. Raises CanaryFailed (and keeps the kernel stopped) when one is not."""
        seed_src = self.archive.source("0")
        reasons: dict[str, str] = {}
        passed: list[str] = []
        canaries = sorted(self._canary_set(seed_src).items())
        for n, (name, diff) in enumerate(canaries, 1):
            self.progress = f"integrity canaries: {n}/{len(canaries)} ({name})"
            try:
                source = self._apply(seed_src, diff)
                problems = check_source(source)
                if problems:
                    raise Rejected("static check: " + "; ".join(problems))
                await self.score(f"canary-{name}", source, False)
                await self.score(f"canary-{name}", source, True)
            except Rejected as e:
                reasons[name] = str(e)
                continue
            passed.append(name)
        self.canaries = reasons
        if passed:
            self.canary_failed = (f"integrity canary {', '.join(passed)} was not rejected: a "
                                  "check the evaluation depends on is weaker than pinned; "
                                  "iterations stop until every canary is rejected again")
            self._save_state()
            log.error("dgm: %s", self.canary_failed)
            raise CanaryFailed(self.canary_failed)
        if self.canary_failed:
            log.warning("dgm: every integrity canary is rejected again: iterations resume")
        self.canary_failed = ""
        self._save_state()
        log.info("dgm: %d integrity canaries rejected", len(reasons))
        return reasons

    def _reward_arm(self, v: Variant) -> None:
        """The `auto` bandit learns the child's gain over its parent (a failure gains 0)."""
        arm = v.planner.removeprefix(f"{AUTO}:")
        parent = self.archive.variants.get(v.parent or "")
        gain = None
        if (v.decision in PAID and parent is not None and v.reward_full is not None
                and parent.reward_full is not None):
            gain = v.reward_full - parent.reward_full
        r = self.bandit.update(arm, gain)
        self._save_state()
        log.info("dgm auto: %s on variant %s gained %.4f (bandit %s)", arm, v.id, r,
                 self.bandit.summary())

    async def _verify(self, v: Variant, parent: Variant, source: str) -> None:
        await self.fresh(parent)
        problems = check_source(source)
        if problems:
            raise Rejected("static check: " + "; ".join(problems))
        if self.cfg.lint:
            self.progress = f"variant {v.id}: stage 1 (ruff + pylint)"
            try:
                v.lint = await lint_scores(source, self.limits)
            except RuntimeError as e:
                raise Rejected(f"lint could not run: {e}") from None
            if not parent.lint:
                parent.lint = await lint_scores(self.archive.source(parent.id), self.limits)
                self.archive.save(parent)
            if v.lint["ruff_issues"] > parent.lint.get("ruff_issues", 0.0):
                raise Rejected(f"stage 1: {v.lint['ruff_issues']:g} ruff issues (parent "
                               f"{parent.lint['ruff_issues']:g})")
            if v.lint["pylint"] < parent.lint.get("pylint", 0.0):
                raise Rejected(f"stage 1: pylint {v.lint['pylint']:.2f} below the parent's "
                               f"{parent.lint['pylint']:.2f}")
        self.progress = f"variant {v.id}: stage 2, cheap window"
        cheap = await self.score(v.id, source, False)
        v.reward_cheap, v.data_sha256, v.model_key = cheap.reward, self.data_hash, self.eval_key()
        if parent.reward_cheap is not None and cheap.reward < parent.reward_cheap:
            raise Rejected(f"cascade: cheap-window reward {cheap.reward:.4f} below the parent's "
                           f"{parent.reward_cheap:.4f}")
        self.progress = f"variant {v.id}: stage 2, full window"
        full = await self.score(v.id, source, True)
        v.reward_full, v.sub_rewards, v.trades = full.reward, full.sub_rewards, full.trades
        diffs = [a - b for a, b in zip(full.sub_rewards, parent.sub_rewards, strict=True)]
        mean, lo, hi = bootstrap_lower(diffs, self.cfg.bootstrap, self.cfg.confidence,
                                       seed=int(v.id))
        v.ci_low, v.ci_high = lo, hi
        v.decided = now_iso()
        if lo > 0.0:
            v.decision = "accepted"
            v.reason = (f"beats parent {parent.id}: mean sub-window gain {mean:.4f}, "
                        f"{self.cfg.confidence:.0%} lower bound {lo:.4f} > 0")
            await self._record("accepted", v, v.reason)
        else:
            v.decision = "archived"
            v.reason = (f"not shown better than parent {parent.id}: mean gain {mean:.4f}, "
                        f"lower bound {lo:.4f} ≤ 0")
            await self._record("archived", v, v.reason)

    # --- live: shadow, promotion, monitoring, rollback ----------------------------------
    async def policy(self, since: int) -> PolicyReport:
        """The orchestrator's slots, its violations and its outcomes after `since`."""
        op = PolicyOp(args=PolicyArgs(since=since))
        return (await self._bus().control("orchestrator", op, timeout=10.0)).result

    async def _change_policy(self, op: PolicyShadowOp | PolicyClearShadowOp | PolicyPromoteOp
                             | PolicyRollbackOp) -> PolicyState:
        return (await self._bus().control("orchestrator", op, timeout=10.0)).result

    def live_id(self) -> str:
        return self.phase.live or "0"

    def _beats(self, v: Variant, other: Variant) -> bool:
        if (not v.sub_rewards or len(v.sub_rewards) != len(other.sub_rewards)
                or (v.data_sha256, v.model_key) != (other.data_sha256, other.model_key)):
            return False
        diffs = [a - b for a, b in zip(v.sub_rewards, other.sub_rewards, strict=True)]
        return bootstrap_lower(diffs, self.cfg.bootstrap, self.cfg.confidence, seed=int(v.id))[1] > 0

    async def _promote_best(self) -> None:
        """While idle: the best proven variant goes to shadow if it beats the live one."""
        if isinstance(self.phase, Idle) and self.phase.hold:
            return
        live = self.archive.variants.get(self.live_id())
        pool = [v for v in self.archive.variants.values()
                if v.decision in ("accepted", "kept") and v.reward_full is not None]
        if live is None or not pool:
            return
        best = max(pool, key=lambda v: (v.reward_full or 0.0, -int(v.id)))
        if best.id != live.id and self._beats(best, live):
            await self.start_shadow(best)

    async def _consider_live(self, v: Variant) -> None:
        """An accepted variant that beats the live one (and any waiting candidate) goes to shadow."""
        if v.decision != "accepted":
            return
        live = self.archive.variants.get(self.live_id())
        if live is None or live.id == v.id or not self._beats(v, live):
            return
        if isinstance(self.phase, Monitoring):
            return  # one change at a time: the next iteration may try again
        if isinstance(self.phase, Shadow) and \
                (self.archive.variants[self.phase.candidate].reward_full or 0) >= (v.reward_full or 0):
            return
        await self.start_shadow(v)

    async def start_shadow(self, v: Variant) -> None:
        state = await self._change_policy(PolicyShadowOp(args=PolicyShadowArgs(
            variant=v.id, source=self.archive.source(v.id))))
        if isinstance(self.phase, Shadow):
            old = self.archive.variants[self.phase.candidate]
            old.decision, old.reason = "accepted", f"replaced in shadow by {v.id}"
            await self._record("archived", old, old.reason)
        self.phase = Shadow(candidate=v.id, live=self.live_id(), since=state.last_outcome,
                            started=time.time())
        self._save_state()
        v.decision = "shadow"
        await self._record("shadow", v, f"in shadow beside {self.live_id()}")
        if self.cfg.shadow_decisions <= 0:
            await self._promote(v, state.last_outcome)

    async def _promote(self, v: Variant, since: int) -> None:
        old = self.live_id()
        await self._change_policy(PolicyPromoteOp(args=VariantArgs(variant=v.id)))
        self.phase = Monitoring(candidate=v.id, live=v.id, replaced=old, since=since,
                                started=time.time())
        self._save_state()
        v.decision, v.reason = "live", f"promoted over {old}"
        await self._record("applied", v, v.reason)
        if self.cfg.monitor_max_pairs <= 0:  # no live check configured: final at once
            await self._keep(v, f"promoted over {old} (live monitoring off)")

    async def _keep(self, v: Variant, reason: str) -> None:
        """The new live variant stays: the replaced one leaves the shadow."""
        await self._change_policy(PolicyClearShadowOp())
        v.decision, v.reason = "kept", reason
        self.phase = Idle(live=v.id)
        self._save_state()
        await self._record("kept", v, v.reason)

    async def monitor(self) -> None:
        """One look at the live outcomes: promote a shadow, keep or roll back a new live one;
        while idle, put the best proven variant in shadow if it beats the live one."""
        async with self.phase_lock:
            await self._monitor()

    async def _resume(self) -> None:
        """Once after start: finish what a stopped kernel left half done. A variant it was
        scoring is closed as an error; a shadow phase the orchestrator still runs continues
        (the `_monitor` below counts its decisions since the persisted `since`); a shadow the
        orchestrator runs that no phase tracks (a kernel stopped between asking for it and
        saving the phase) starts its phase again when it is an archived, accepted variant
        (with the archived source), and is cleared otherwise."""
        await self._close_interrupted()
        shadow = (await self.policy(since=1 << 62)).shadow
        phase = self.phase
        if isinstance(phase, Shadow) and shadow == phase.candidate:
            log.info("dgm: resuming the shadow phase of variant %s (decisions since %s)",
                     shadow, phase.since)
        if shadow is None or not isinstance(phase, Idle):
            return
        cand = self.archive.variants.get(shadow)
        if cand is not None and cand.decision in ("accepted", "shadow") and not phase.hold:
            log.warning("dgm: the orchestrator runs variant %s in shadow though no phase "
                        "tracked it: its shadow phase starts again", cand.id)
            await self.start_shadow(cand)  # the archived source, so it is the one judged
            return
        await self._change_policy(PolicyClearShadowOp())
        log.warning("dgm: cleared a shadow no phase tracked (variant %s)", shadow)

    async def _close_interrupted(self) -> None:
        """A variant a stopped kernel was scoring is closed as an error."""
        for v in list(self.archive.variants.values()):
            if v.decision == "pending" and v.iteration <= self.started_at:
                v.decision, v.reason, v.decided = ("error", "interrupted: the kernel stopped "
                                                   "while it was evaluated", now_iso())
                await self._record("rejected", v, v.reason)

    async def _monitor(self) -> None:
        if not self.resumed:
            await self._resume()
            self.resumed = True
        phase = self.phase
        status = await self.policy(since=0 if isinstance(phase, Idle) else phase.since)
        match phase:
            case Idle():
                await self._follow_live(phase, status)
            case Shadow():
                await self._judge_shadow(phase, status)
            case Monitoring():
                await self._judge_live(phase, status)

    async def _follow_live(self, phase: Idle, status: PolicyReport) -> None:
        """Idle: follow a live variant changed outside the kernel, then promote the best."""
        if status.live and status.live != phase.live:
            self.phase = Idle(live=status.live)
            self._save_state()
        await self._promote_best()

    async def _judge_shadow(self, phase: Shadow, status: PolicyReport) -> None:
        """A candidate in shadow: promoted once it decided `shadow_decisions` times without
        a violation; rejected at its first violation."""
        v = self.archive.variants[phase.candidate]
        if status.live == v.id:  # promoted, though the reply was lost: monitor it
            self.phase = Monitoring(candidate=v.id, live=v.id, replaced=str(status.previous),
                                    since=phase.since, started=time.time())
            self._save_state()
            v.decision, v.reason = "live", f"promoted over {status.previous}"
            await self._record("applied", v, v.reason)
            return
        if status.shadow != v.id:
            await self._shadow_gone(v, status)
            return
        mine = [o for o in status.outcomes if o.shadow == v.id and not o.shadow_error]
        bad = [o for o in mine if o.shadow_violation]
        if bad:
            await self._change_policy(PolicyClearShadowOp())
            await self._reject_shadow(v, bad[0])
        elif len(mine) >= self.cfg.shadow_decisions:
            await self._promote(v, status.last_outcome)

    async def _shadow_gone(self, v: Variant, status: PolicyReport) -> None:
        """The orchestrator no longer runs the candidate in shadow."""
        cut = [o for o in status.outcomes if o.shadow == v.id and o.shadow_violation]
        if cut:  # the orchestrator cut it and cleared the shadow itself: rejected, or it
            # would be shadowed and cut again forever
            await self._reject_shadow(v, cut[0])
            return
        # cleared outside the kernel (or lost): the candidate is accepted again, and may go
        # to shadow again, never left "shadow"
        self.phase = Idle(live=self.live_id())
        self._save_state()
        v.decision = "accepted"
        v.reason = (f"its shadow was cleared outside the kernel (the orchestrator "
                    f"runs {status.shadow} in shadow)")
        await self._record("archived", v, v.reason)

    async def _reject_shadow(self, v: Variant, outcome: PolicyOutcome) -> None:
        v.decision, v.reason = "rejected", f"violation in shadow: {outcome.shadow_violation}"
        self.phase = Idle(live=self.live_id())
        self._save_state()
        await self._record("rejected", v, v.reason)

    async def _judge_live(self, phase: Monitoring, status: PolicyReport) -> None:
        """A new live variant against the one it replaced (in shadow) on the same runs:
        kept when better (or after `monitor_max_pairs`), rolled back when worse or at a
        violation."""
        vid, replaced = phase.candidate, phase.replaced
        v = self.archive.variants[vid]
        outs = status.outcomes
        violations = [o for o in outs if o.live == vid and o.violation]
        if violations:
            await self._rollback(None, f"live violation: {violations[0].violation}")
            return
        diffs = [o.live_return - o.shadow_return for o in outs
                 if o.live == vid and o.shadow == replaced]
        if len(diffs) < self.cfg.monitor_min_pairs:
            return
        mean, lo, hi = bootstrap_lower(diffs, self.cfg.bootstrap, self.cfg.confidence,
                                       seed=len(diffs))
        v.live = {"pairs": len(diffs), "mean_diff_pct": mean, "ci_low": lo, "ci_high": hi,
                  "against": replaced}
        if hi < 0.0:
            await self._rollback(None, f"live reward below the replaced policy {replaced}: mean "
                                      f"{mean:+.4f}% per decision over {len(diffs)} paired runs, "
                                      f"{self.cfg.confidence:.0%} upper bound {hi:+.4f}% < 0")
        elif lo > 0.0 or len(diffs) >= self.cfg.monitor_max_pairs:
            await self._keep(v, f"live over {len(diffs)} paired runs: mean {mean:+.4f}% vs "
                                f"{replaced}")

    async def rollback(self, variant: str | None, reason: str) -> tuple[str, str]:
        """Serve the replaced (or named) variant again and record why."""
        async with self.phase_lock:
            out = await self._rollback(variant, reason)
            # by hand: no automatic promotion until the next run
            self.phase = Idle(live=self.live_id(), hold=True)
            self._save_state()
            return out

    async def _rollback(self, variant: str | None, reason: str) -> tuple[str, str]:
        phase = self.phase
        if variant is None and isinstance(phase, Monitoring):
            variant = phase.replaced
        now = await self.policy(since=1 << 62)
        # the orchestrator may have rolled back already (a cut call): the variant being
        # replaced is still the one this phase monitors
        before = phase.candidate if isinstance(phase, Monitoring) else str(now.live)
        state: PolicyState = now  # already served: a second rollback would make previous = live
        if variant is None or now.live != variant:
            state = await self._change_policy(PolicyRollbackOp(
                args=PolicyRollbackArgs(variant=variant, reason=reason)))
        live = state.live
        if isinstance(phase, Shadow) and phase.candidate in self.archive.variants:
            cand = self.archive.variants[phase.candidate]  # a waiting candidate leaves
            cand.decision, cand.reason = "accepted", f"shadow cleared by a rollback: {reason}"
            await self._record("archived", cand, cand.reason)
        if before in self.archive.variants and before not in (live, "0"):
            old = self.archive.variants[before]
            old.decision, old.reason, old.decided = "rolled_back", reason, now_iso()
            await self._record("rolled_back", old, reason)
        self.phase = Idle(live=live)
        self._save_state()
        log.warning("dgm: rolled back from %s to %s: %s", before, live, reason)
        return before, live

    def facts(self) -> dict[str, Any]:
        best = self.archive.best()
        return {"iteration": self.iteration, "variants": len(self.archive.variants),
                "phase": msgspec.to_builtins(self.phase), "progress": self.progress, "sandbox": isolation(),
                "best": best and best.id, "best_reward": best and best.reward_full,
                "market_csv": str(self.csv), "auto": self.bandit.summary(),
                "canaries": self.canaries, "canary_failed": self.canary_failed,
                "sandbox_runs": self.sandbox_runs}
