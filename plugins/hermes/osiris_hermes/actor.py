"""The hermes actor: `osiris.hermes.generate` with token streaming, pause/resume that frees
accelerator memory, PEFT adapter control ops and health facts."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

from osiris_contracts.messages import GenerateChunk, GenerateReply, GenerateRequest
from osiris_contracts.models import ModelFacts
from osiris_contracts.subjects import HERMES_GENERATE
from osiris_core import Actor, RequestContext, on_event, service
from osiris_core.errors import BadRequest, ServiceError, Unavailable
from osiris_core.observability.usage import record_tokens
from osiris_core.protocol import CancelRequest
from osiris_core.subjects import REQUEST_ID_HEADER, cancel

from .batching import Batcher
from .config import HermesConfig
from .engine import HermesEngine, ModelError, Row, sampling
from .streaming import TokenStream


class Hermes(Actor[HermesConfig]):
    name = "hermes"
    description = "free-text generation with a transformers causal LM (fp or GPTQ)"

    async def on_start(self) -> None:
        source = self.config.model or str(Path(self.ctx.data_dir) / "models" / "hermes")
        self.engine = HermesEngine(source, self.config.device, self.config.dtype,
                                   self.config.trust_remote_code)
        self.gen_lock = asyncio.Semaphore(max(1, self.config.parallel))
        self.batcher = Batcher(self._generate_batch, self.gen_lock, self.config.parallel,
                               self.config.batch_size, fits=self._batch_fits)
        self.model_lock = asyncio.Lock()  # adapter swaps and pause wait for generations
        self.load_error: str | None = None
        self.last_pause: dict[str, Any] = {}
        self.cancellable: dict[str, threading.Event] = {}
        self.cancelled = 0
        await self._load()

    async def _load(self) -> None:
        try:
            await asyncio.to_thread(self.engine.load)
            for name, path in self.config.adapters.items():
                await asyncio.to_thread(self.engine.load_adapter, name, path, False)
            if self.config.adapter:
                self.engine.set_adapter(self.config.adapter)
            self.load_error = None
            self.log.info("hermes: loaded %s on %s in %.2fs", self.engine.source,
                          self.engine.device, self.engine.load_s or 0)
        except ServiceError as e:
            # keep serving: every request gets this cause until a `reload` succeeds
            self.load_error = e.message
            self.log.error("hermes: %s", e.message)

    async def on_stop(self) -> None:
        await asyncio.to_thread(self.engine.release, "drop")

    async def on_pause(self) -> None:
        # a batch still running (its callers may already have left) ends before the weights go
        async with self.model_lock, self._all_generations():
            mode = self.engine.pause_mode(self.config.pause_mode)
            before = self.engine.bytes_resident()
            t0 = time.perf_counter()
            await asyncio.to_thread(self.engine.release, mode)
            self.last_pause = {"mode": mode, "released_bytes": before,
                               "pause_s": round(time.perf_counter() - t0, 4)}

    async def on_resume(self) -> None:
        async with self.model_lock:
            t0 = time.perf_counter()
            if self.load_error is None:
                await asyncio.to_thread(self.engine.restore)
            self.last_pause["resume_s"] = round(time.perf_counter() - t0, 4)

    def facts(self) -> dict[str, Any]:
        e = self.engine
        path = e.path
        model = ModelFacts(loaded=e.loaded, device=e.device, adapter=e.active_adapter,
                           model_path=str(path) if path else None,
                           model_file_exists=e.model_file_exists(),
                           bytes_resident=e.bytes_resident())
        return {
            **model.to_dict(), "model": e.source, "quantization": e.quantization,
            "where": e.where, "cancelled": self.cancelled, "adapters": sorted(e.adapters),
            "load_s": e.load_s, "load_error": self.load_error, **self.last_pause,
            **self.batcher.facts(),
        }

    # --- control ops --------------------------------------------------------------------
    async def on_control(self, op: str, args: dict[str, Any]) -> dict[str, Any]:
        if op == "reload":
            async with self.model_lock, self._all_generations():
                await asyncio.to_thread(self.engine.release, "drop")
                await self._load()
            if self.load_error:
                raise Unavailable(self.load_error)
            return {"loaded": True, "load_s": self.engine.load_s}
        self._require_loaded()
        async with self.model_lock, self._all_generations():
            if op == "load_adapter":
                name, path = _arg(args, "name"), _arg(args, "path")
                t0 = time.perf_counter()
                await asyncio.to_thread(self.engine.load_adapter, name, path,
                                        bool(args.get("activate", True)))
                return {"adapter": self.engine.active_adapter, "load_s": time.perf_counter() - t0}
            if op in ("set_adapter", "switch_adapter"):
                self.engine.set_adapter(args.get("name") or None)
                return {"adapter": self.engine.active_adapter}
            if op == "unload_adapter":
                await asyncio.to_thread(self.engine.unload_adapter, _arg(args, "name"))
                return {"adapter": self.engine.active_adapter}
        raise BadRequest(f"unknown control op {op!r} for hermes (reload, load_adapter, "
                         "set_adapter, unload_adapter, pause, resume, status)", field="op")

    class _AllSlots:
        def __init__(self, sem: asyncio.Semaphore, n: int) -> None:
            self.sem, self.n = sem, n

        async def __aenter__(self) -> None:
            held = 0
            try:
                for _ in range(self.n):
                    await self.sem.acquire()
                    held += 1
            except BaseException:  # cancelled half-way: give back what it took
                for _ in range(held):
                    self.sem.release()
                raise

        async def __aexit__(self, *exc: object) -> None:
            for _ in range(self.n):
                self.sem.release()

    def _all_generations(self) -> Hermes._AllSlots:
        return Hermes._AllSlots(self.gen_lock, max(1, self.config.parallel))

    def _require_loaded(self) -> None:
        if self.load_error:
            raise Unavailable(f"hermes model not loaded: {self.load_error}")
        if not self.engine.loaded:
            raise Unavailable("hermes model not loaded (paused or released)")

    # --- generation ---------------------------------------------------------------------
    @service(HERMES_GENERATE)
    async def generate(self, req: GenerateRequest,
                       ctx: RequestContext) -> GenerateReply | GenerateChunk:
        """Generate text; with `stream: true` publish GenerateChunks to the reply inbox."""
        # the contract bounds every field (refused at decode, naming it); what it cannot
        # know is this actor's cap and the model's context
        if req.max_length > self.config.max_new_tokens_cap:
            raise BadRequest(f"max_length must be 1..{self.config.max_new_tokens_cap} "
                             "([plugins.hermes] max_new_tokens_cap)", field="max_length",
                             limit=self.config.max_new_tokens_cap)
        self._require_loaded()
        ids = self.engine.encode_prompt(req.prompt, chat=self.config.chat_template,
                                        system=self.config.system_prompt,
                                        limit=self.config.max_prompt_tokens)
        self._check_context(len(ids), req.max_length)
        stream_to = ctx.reply if req.stream and ctx.reply else None
        stop_flag = threading.Event()
        rid = ctx.headers.get(REQUEST_ID_HEADER)
        if rid:
            self.cancellable[rid] = stop_flag
        try:
            text, n_new, n_chunks = await self._run(ids, req, stream_to, stop_flag)
        finally:
            if rid:
                self.cancellable.pop(rid, None)
        record_tokens(len(ids), n_new)  # the request's usage: metrics and its span
        usage = {"prompt_tokens": len(ids), "completion_tokens": n_new,
                 "total_tokens": len(ids) + n_new}
        if stream_to:
            return GenerateChunk(text="", index=n_chunks, done=True, generated_text=text,
                                 usage=usage)
        return GenerateReply(generated_text=text, usage=usage)

    def _check_context(self, prompt_tokens: int, max_length: int) -> None:
        """Prompt and new tokens must fit the model's positions (past them a model with
        learned positions fails inside generate, which would crash the actor)."""
        context = self.engine.context_length
        if context is None:
            return
        if prompt_tokens >= context:
            raise BadRequest(f"prompt too long: {prompt_tokens} tokens, the model's context "
                             f"is {context}", field="prompt", tokens=prompt_tokens,
                             limit=context - 1)
        room = context - prompt_tokens
        if max_length > room:
            raise BadRequest(f"max_length {max_length} does not fit: the prompt takes "
                             f"{prompt_tokens} of the model's {context} context tokens, "
                             f"leaving {room}", field="max_length", limit=room)

    @on_event(cancel("hermes"), queue=False)
    async def on_cancel(self, req: CancelRequest) -> None:
        """The caller gave up (e.g. its HTTP client left): stop that generation early."""
        flag = self.cancellable.get(req.request_id)
        if flag is not None:
            flag.set()
            self.cancelled += 1

    async def _run(self, ids: list[int], req: GenerateRequest, stream_to: str | None,
                   stop_flag: threading.Event) -> tuple[str, int, int]:
        tokens = TokenStream(self.engine, self.ctx.bus.nc, stream_to, req.stop or [], stop_flag)
        key = sampling(self.config.temperature if req.temperature is None else req.temperature,
                       req.top_p)
        pumper = asyncio.create_task(tokens.pump())
        try:
            out = await self.batcher.submit(Row(ids, req.max_length, stop_flag,
                                                tokens.on_token), key)
        finally:
            tokens.close()
            await pumper
        text = await tokens.finish(out)
        return text, len(out), tokens.chunks

    def _batch_fits(self, rows: list[Row]) -> bool:
        """Every row of a batch runs to the longest prompt plus the largest `max_length`
        (a finished row is fed padding): that must fit the model's positions, as each
        request alone was checked to."""
        context = self.engine.context_length
        return context is None or (max(len(r.prompt_ids) for r in rows)
                                   + max(r.max_new_tokens for r in rows)) <= context

    def _generate_batch(self, rows: list[Row], key: Any) -> None:
        """One batch on the model (a worker thread): rows share the sampling `key`."""
        temperature, top_p = key
        self.engine.generate_batch(rows, temperature=temperature, top_p=top_p,
                                   repetition_penalty=self.config.repetition_penalty,
                                   no_repeat_ngram_size=self.config.no_repeat_ngram_size)


def _arg(args: dict[str, Any], key: str) -> str:
    v = args.get(key)
    if not isinstance(v, str) or not v:
        raise BadRequest(f"control arg {key!r} is required (a non-empty string)", field=key)
    return v


__all__ = ["Hermes", "ModelError"]
