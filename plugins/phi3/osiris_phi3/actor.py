"""The phi3 actor: `osiris.phi3.generate` → a TradeProposal that always validates, few-shot
examples from feedback corrections, adapters hot-swapped from `osiris.adapters.published`
(with rollback), pause/resume and health facts; raw, caller-guided and scoring services."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import msgspec

from osiris_contracts import tables
from osiris_contracts.messages import (
    AdapterPublished,
    GenerateRequest,
    StoreQuery,
    StoreRows,
    TradeProposal,
)
from osiris_contracts.models import ModelFacts
from osiris_contracts.subjects import ADAPTERS_PUBLISHED, PHI3_GENERATE, STORE_QUERY
from osiris_core import Actor, EventMeta, control_op, on_event, service
from osiris_core.errors import BadRequest, ServiceError, Unavailable
from osiris_core.observability.usage import record_tokens

from .config import Phi3Config
from .contracts import (
    PHI3_COMPLETE,
    PHI3_GUIDED,
    PHI3_SCORE,
    Decision,
    FewShot,
    FewShotOp,
    GuidedReply,
    GuidedRequest,
    Phi3Completion,
    ScoreReply,
    ScoreRequest,
)
from .engine import Phi3Engine
from .guidance import Guidance
from .prompt import chat_prompt, detect_format
from .serving import ServedPath, decide


class Phi3(Actor[Phi3Config]):
    name = "phi3"
    description = "schema-constrained trade proposals with ONNX Runtime GenAI"

    async def on_start(self) -> None:
        path = Path(self.config.model or Path(self.ctx.data_dir) / "models" / "phi3-onnx")
        self.engine = Phi3Engine(path.expanduser(), self.config.provider)  # noqa: ASYNC240
        c = self.config
        self.chat_format = detect_format(path) if c.chat_format == "auto" else c.chat_format
        self.served = ServedPath.from_config(c, self.chat_format)
        self.slots = asyncio.Semaphore(max(1, self.config.parallel))
        self.adapter_lock = asyncio.Lock()
        self.load_error: str | None = None
        self.active: str | None = None
        self.previous: str | None = None
        self.served_scores: dict[str, dict[str, float] | None] = {}
        self.stats: dict[str, Any] = {"attempts_last": 0, "invalid_total": 0, "few_shot_last": 0}
        self.last_pause: dict[str, Any] = {}
        self.state_file = Path(self.ctx.data_dir) / "phi3" / "adapters.json"
        try:
            await asyncio.to_thread(self.engine.load)
            await self._restore_adapters()
            self.log.info("phi3: loaded %s (%s) in %.2fs", path, self.engine.provider,
                          self.engine.load_s or 0)
        except ServiceError as e:
            self.load_error = e.message  # keep serving: requests get this cause (503)
            self.log.error("phi3: %s", e.message)

    async def on_stop(self) -> None:
        self.engine.release()

    async def on_pause(self) -> None:
        t0 = time.perf_counter()
        await asyncio.to_thread(self.engine.release)
        self.last_pause = {"pause_s": round(time.perf_counter() - t0, 4)}

    async def on_resume(self) -> None:
        t0 = time.perf_counter()
        if self.load_error is None:
            await asyncio.to_thread(self.engine.load)  # reloads the adapters it had
        self.last_pause["resume_s"] = round(time.perf_counter() - t0, 4)

    def facts(self) -> dict[str, Any]:
        e = self.engine
        # GenAI does not report its allocations; its weights dominate and are read whole
        model = ModelFacts(loaded=e.loaded, device=e.provider, adapter=self.active,
                           model_path=str(e.path), model_file_exists=e.model_file_exists(),
                           bytes_resident=self._weight_bytes() if e.loaded else 0)
        return {
            **model.to_dict(), "model": str(e.path), "adapter_version": self.active,
            "previous_adapter": self.previous, "adapters": sorted(e.adapter_files),
            # the trainer's gate scored it here, on held-out corrections, before publishing
            "adapter_served_agreement": self.served_scores.get(self.active or ""),
            "lora_inputs": e.has_lora_inputs, "load_s": e.load_s,
            "load_error": self.load_error, "chat_format": self.chat_format,
            **self.stats, **self.last_pause,
        }

    def _weight_bytes(self) -> int:
        if not hasattr(self, "_weights"):
            folder = Path(str(self.engine.path))
            self._weights = sum(f.stat().st_size for f in folder.glob("*")
                                if f.is_file() and (f.suffix in (".onnx", ".data")
                                                    or f.name.endswith(".onnx.data")))
        return self._weights

    def _require_loaded(self) -> None:
        if self.load_error:
            raise Unavailable(f"phi3 model not loaded: {self.load_error}")
        if not self.engine.loaded:
            raise Unavailable("phi3 model not loaded (paused or released)")

    # --- services -----------------------------------------------------------------------
    @service(PHI3_GENERATE)
    async def generate(self, req: GenerateRequest) -> TradeProposal:
        """A proposal: guided by the JSON schema, checked again, retried, or a clear error."""
        self._check(req)
        examples = await self._few_shot()
        shots = [msgspec.json.encode(p).decode() for p in examples]
        ids = self.engine.encode(self.served.prompt(req.prompt, shots), req.max_length)
        schema = self.served.schema(req.prompt)
        got = None
        for attempt in range(self.served.attempts):
            async with self.slots:
                self._require_loaded()
                got = await asyncio.to_thread(
                    self.served.attempt, self.engine, ids, schema, attempt,
                    max_new=req.max_length, adapter=self.active, temperature=req.temperature,
                    top_p=req.top_p)
            record_tokens(len(ids), len(got.ids))  # every attempt ran the model: all count
            if got.proposal is not None:
                self.stats["attempts_last"] = attempt + 1
                return got.proposal
            self.stats["invalid_total"] += 1
            self.log.warning("phi3: attempt %d/%d invalid: %s", attempt + 1,
                             self.served.attempts, got.error)
        attempts = self.served.attempts
        self.stats["attempts_last"] = attempts
        assert got is not None
        if got.truncated:  # the guided JSON was still open when max_length ran out: the caller's fix
            raise BadRequest(f"max_length {req.max_length} is too small to finish a proposal "
                             f"(the JSON was cut off: {got.text[-80:]!r}); ask for more tokens",
                             field="max_length")
        raise ServiceError(f"phi3 could not produce a valid proposal in {attempts} attempts "
                           f"(max_length {req.max_length}): {got.error}", code=502,
                           attempts=attempts)

    @service(PHI3_SCORE)
    async def score(self, req: ScoreRequest) -> ScoreReply:
        """The decision fields this actor serves for each row — same engine, precision,
        prompt, guidance, grounding and decoding as `generate` — with the live, base, or a
        shadow adapter (`adapter_file`, loaded for this request only). One row at a time
        per slot, so users' requests interleave with a long scoring run."""
        self._require_loaded()
        t0 = time.perf_counter()
        shadow = f"shadow-{uuid.uuid4().hex[:8]}" if req.adapter_file else None
        if shadow is not None:
            assert req.adapter_file is not None
            await asyncio.to_thread(self.engine.load_adapter, shadow, req.adapter_file)
            adapter: str | None = shadow
        else:
            adapter = self._adapter_named(req.adapter)
        try:
            out: list[Decision | None] = []
            for row in req.rows:
                async with self.slots:
                    self._require_loaded()
                    out.append(await asyncio.to_thread(
                        decide, self.engine, self.served, row.prompt, row.shots,
                        adapter=adapter, max_new=req.max_length))
        finally:
            if shadow is not None:
                with contextlib.suppress(ServiceError):
                    await asyncio.to_thread(self.engine.unload_adapter, shadow)
        return ScoreReply(decisions=out, adapter=None if shadow else adapter,
                          seconds=round(time.perf_counter() - t0, 3))

    @service(PHI3_COMPLETE)
    async def complete(self, req: GenerateRequest) -> Phi3Completion:
        """Unguided completion of the raw prompt (no chat wrapping, no few-shot): the path the
        parity test and the benchmarks use; greedy unless temperature is set."""
        self._check(req)
        ids = self.engine.encode(req.prompt, req.max_length)
        async with self.slots:
            self._require_loaded()
            out, text = await asyncio.to_thread(
                self.engine.generate, ids, max_new=req.max_length, schema=None,
                adapter=self.active, temperature=req.temperature, top_p=req.top_p)
        record_tokens(len(ids), len(out))
        return Phi3Completion(generated_text=text, token_ids=out,
                              usage={"prompt_tokens": len(ids), "completion_tokens": len(out),
                                     "total_tokens": len(ids) + len(out)})

    @service(PHI3_GUIDED)
    async def guided(self, req: GuidedRequest) -> GuidedReply:
        """A completion under the caller's grammar (JSON schema, Lark or regex): no trade
        prompt, few-shot or proposal schema, so any process can make the model *choose*
        from a language it defines (the dgm's typed edits). Seeded, so a caller can cache
        and replay it; a grammar that does not compile is the caller's 400, naming it."""
        limit = self.config.max_grammar_chars
        if len(req.grammar) > limit:
            raise BadRequest(f"grammar is {len(req.grammar):,} characters; the limit is "
                             f"{limit:,} ([plugins.phi3] max_grammar_chars)", field="grammar",
                             limit=limit)
        self._check_length(req.max_length)
        adapter = self._adapter_named(req.adapter)
        text = req.prompt if req.system is None else chat_prompt(req.system, req.prompt,
                                                                 self.chat_format)
        ids = self.engine.encode(text, req.max_length)
        async with self.slots:
            self._require_loaded()
            out, generated = await asyncio.to_thread(
                self.engine.generate, ids, max_new=req.max_length, schema=None,
                guidance=Guidance(req.guidance, req.grammar), adapter=adapter,
                temperature=req.temperature, top_p=req.top_p, seed=req.seed,
                repetition_penalty=req.repetition_penalty)
        record_tokens(len(ids), len(out))
        return GuidedReply(generated_text=generated, token_ids=out,
                           usage={"prompt_tokens": len(ids), "completion_tokens": len(out),
                                  "total_tokens": len(ids) + len(out)},
                           finish_reason="stop" if self.engine.ended(out) else "length",
                           adapter=adapter)

    def _adapter_named(self, name: str) -> str | None:
        """A request's adapter: "live" (the one in service), "base" (none) or a loaded one."""
        if name == "live":
            return self.active
        if name == "base":
            return None
        if name in self.engine.adapter_files:
            return name
        raise BadRequest(f"unknown adapter {name!r} (live, base, or one of "
                         f"{sorted(self.engine.adapter_files)})", field="adapter")

    def _check(self, req: GenerateRequest) -> None:
        """What the contract cannot know: this actor's cap and its model's context (the
        contract already refused values out of any range, naming the field)."""
        if req.stream:
            raise BadRequest("phi3 returns one validated proposal; streaming is not offered",
                             field="stream")
        self._check_length(req.max_length)

    def _check_length(self, max_length: int) -> None:
        if max_length > self.config.max_new_tokens_cap:
            raise BadRequest(f"max_length must be 1..{self.config.max_new_tokens_cap} "
                             "([plugins.phi3] max_new_tokens_cap)", field="max_length",
                             limit=self.config.max_new_tokens_cap)
        self._require_loaded()
        context = self.engine.context_length
        if max_length >= context:
            raise BadRequest(f"max_length {max_length} leaves no room for the prompt in "
                             f"the model's context of {context} tokens", field="max_length",
                             limit=context - 1)

    async def _few_shot(self) -> list[TradeProposal]:
        """Latest corrected proposals (seed 004); none when no feedback actor answers."""
        n = self.config.few_shot
        if n <= 0:
            return []
        q = StoreQuery(table=tables.FEEDBACK, filter="feedback_type = 'correction'", limit=n * 3,
                       order_by="timestamp", descending=True)
        try:
            rows = await self.request(STORE_QUERY, q, reply_type=StoreRows,
                                      timeout=self.config.feedback_timeout_s)
        except ServiceError as e:  # Unavailable (no feedback actor), timeout, store error
            self.log.debug("phi3: no few-shot examples: %s", e.message)
            self.stats["few_shot_last"] = 0
            return []
        out: list[TradeProposal] = []
        for row in rows.rows:
            cp = row.get("corrected_proposal")
            if row.get("feedback_type", "correction") != "correction" or not cp:
                continue
            try:
                raw = cp.encode() if isinstance(cp, str) else msgspec.json.encode(cp)
                out.append(msgspec.json.decode(raw, type=TradeProposal))
            except (msgspec.ValidationError, msgspec.DecodeError):
                continue
            if len(out) >= n:
                break
        self.stats["few_shot_last"] = len(out)
        return out

    # --- adapters -----------------------------------------------------------------------
    @on_event(ADAPTERS_PUBLISHED)
    async def on_adapter_published(self, evt: AdapterPublished, meta: EventMeta) -> None:
        """Durable: a published adapter is loaded even if it came while we were down."""
        await self._apply_published(evt)

    @on_event(ADAPTERS_PUBLISHED, durable=False, queue=False)
    async def on_adapter_broadcast(self, evt: AdapterPublished) -> None:
        """Every replica sees every publication (the durable consumer reaches only one)."""
        await self._apply_published(evt)

    async def _apply_published(self, evt: AdapterPublished) -> None:
        if self.active == evt.version and evt.version in self.engine.adapter_files:
            return  # idempotent: redelivery or the other subscription got here first
        try:
            self.served_scores[evt.version] = served_agreement(evt.metrics)
            await self._load_adapter(evt.version, evt.path)
            self.log.info("phi3: adapter %s (%s) active", evt.version, evt.path)
        except ServiceError as e:
            self.log.error("phi3: published adapter %s not loaded: %s", evt.version, e.message)

    @control_op
    async def few_shot_now(self, op: FewShotOp) -> FewShot:
        """What a generate request would prepend now (the dgm keys its reply cache by it: the
        same prompt can get another reply after new feedback)."""
        shots = [msgspec.json.encode(p).decode() for p in await self._few_shot()]
        digest = hashlib.sha256("\n".join(shots).encode()).hexdigest() if shots else ""
        return FewShot(few_shot=shots, few_shot_sha256=digest)

    async def on_control(self, op: str, args: dict[str, Any]) -> dict[str, Any]:
        """The adapter ops, untyped: the gateway's /actors/{name}/adapters routes send them
        to hermes and phi3 alike."""
        if op == "load_adapter":
            path = _arg(args, "path")
            name = str(args.get("name") or args.get("version") or Path(path).stem)
            await self._load_adapter(name, path)
        elif op == "rollback":
            async with self.adapter_lock:
                if self.previous is None and self.active is None:
                    raise BadRequest("no adapter to roll back from", field="op")
                self.active, self.previous = self.previous, self.active
                self._save_state()
        elif op in ("set_adapter", "switch_adapter"):
            target: str | None = args.get("name") or None
            async with self.adapter_lock:
                if target is not None and target not in self.engine.adapter_files:
                    raise BadRequest(f"unknown adapter {target!r}", field="name")
                if target != self.active:
                    self.previous, self.active = self.active, target
                self._save_state()
        elif op == "unload_adapter":
            name = _arg(args, "name")
            async with self.adapter_lock:
                if name == self.active:
                    raise BadRequest(f"adapter {name!r} is active: switch first", field="name")
                await asyncio.to_thread(self.engine.unload_adapter, name)
                if self.previous == name:
                    self.previous = None
                self._save_state()
        else:
            raise BadRequest(f"unknown control op {op!r} for phi3 (few_shot, load_adapter, "
                             "rollback, set_adapter, unload_adapter, pause, resume, status)", field="op")
        return {"adapter": self.active, "previous_adapter": self.previous}

    async def _load_adapter(self, name: str, path: str) -> None:
        self._require_loaded()
        async with self.adapter_lock:
            t0 = time.perf_counter()
            await asyncio.to_thread(self.engine.load_adapter, name, path)
            if self.active != name:
                self.previous, self.active = self.active, name
            self.stats["adapter_load_s"] = round(time.perf_counter() - t0, 4)
            self._save_state()

    def _save_state(self) -> None:
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"active": self.active, "previous": self.previous,
                                   "files": self.engine.adapter_files,
                                   "served_scores": self.served_scores}))
        os.replace(tmp, self.state_file)

    async def _restore_adapters(self) -> None:
        """Reload the adapters active before a restart, else the configured one."""
        try:
            state = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            state = {}
        for name, file in (state.get("files") or {}).items():
            try:
                await asyncio.to_thread(self.engine.load_adapter, name, file)
            except ServiceError as e:
                self.log.warning("phi3: adapter %s not restored: %s", name, e.message)
        files = self.engine.adapter_files
        self.served_scores.update(state.get("served_scores") or {})
        self.active = state.get("active") if state.get("active") in files else None
        self.previous = state.get("previous") if state.get("previous") in files else None
        if self.active is None and self.config.adapter:
            await self._load_adapter(Path(self.config.adapter).stem, self.config.adapter)


def _arg(args: dict[str, Any], key: str) -> str:
    v = args.get(key)
    if not isinstance(v, str) or not v:
        raise BadRequest(f"control arg {key!r} is required (a non-empty string)", field=key)
    return v


def served_agreement(metrics: dict[str, float]) -> dict[str, float] | None:
    """The held-out agreement the trainer's gate measured for a published adapter where phi3
    serves, with its interval ({mean, lo, hi}, as the trainer's status shows it); None when
    the publisher sent none."""
    if "served_candidate" not in metrics:
        return None
    mean = metrics["served_candidate"]
    return {"mean": mean, "lo": metrics.get("served_candidate_lo", mean),
            "hi": metrics.get("served_candidate_hi", mean)}
