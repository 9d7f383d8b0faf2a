"""The hermes model: load (fp or GPTQ) through `AutoModelForCausalLM`, generate, stream,
swap PEFT adapters, and release or reload accelerator memory. Synchronous: the actor runs
these calls in a worker thread."""

from __future__ import annotations

import gc
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from osiris_models.device import resolve_device

from osiris_core.errors import BadRequest, ServiceError, Unavailable
from osiris_core.observability.quiet import quiet

MIN_SAMPLING_TEMPERATURE = 0.01

TINY_HINT = "run 'osiris models tiny DIR' and point [plugins.hermes].model at DIR/hermes"


def sampling(temperature: float | None, top_p: float | None) -> tuple[float, float | None]:
    """The (temperature, top_p) a generation really uses: (0, None) decodes greedily — below
    ~1e-2 the softmax of float32 logits overflows to NaN, which is greedy anyway — and then
    top_p plays no part. Requests with the same pair can share a batch."""
    if temperature is None or temperature < MIN_SAMPLING_TEMPERATURE:
        return 0.0, None
    return temperature, top_p


class ModelError(Unavailable):
    """The model cannot be loaded (missing folder, wrong format …): 503 with the cause."""


def _looks_like_path(source: str) -> bool:
    return source.startswith((".", "/", "~")) or source.count("/") != 1 or Path(source).exists()


def check_source(source: str) -> Path | str:
    """A local folder (checked: exists, is HF format) or a hub id for the local cache."""
    if not source:
        raise ModelError(f"no hermes model configured: {TINY_HINT}")
    if not _looks_like_path(source):
        return source
    path = Path(source).expanduser()
    if not path.exists():
        raise ModelError(f"hermes model folder not found: {path} ({TINY_HINT}, "
                         "or set [plugins.hermes].model to a local folder)")
    if not path.is_dir():
        raise ModelError(f"hermes model path is not a folder: {path}")
    if not (path / "config.json").is_file():
        if (path / "genai_config.json").is_file():
            raise ModelError(f"wrong model format in {path}: an ONNX Runtime GenAI folder "
                             "(that is phi3's format); hermes needs a Hugging Face folder")
        raise ModelError(f"wrong model format in {path}: no config.json (hermes needs a "
                         "Hugging Face transformers folder, fp or GPTQ)")
    return path


@dataclass(eq=False)
class Row:
    """One request's share of a batched generation. `on_token` gets each new token id and
    `on_done` the row itself once it is finished (both from the generating thread); a row
    can finish, and be answered, while longer rows of its batch go on."""

    prompt_ids: list[int]
    max_new_tokens: int
    stop_flag: threading.Event = field(default_factory=threading.Event)
    on_token: Callable[[int], None] | None = None
    on_done: Callable[[Row], None] | None = None
    out: list[int] = field(default_factory=list)
    done: bool = False

    def finish(self) -> None:
        if not self.done:
            self.done = True
            if self.on_done is not None:
                self.on_done(self)


class _RowStreamer:
    """transformers streamer for a batch: each step's token of an unfinished row goes to that
    row (the first call is the prompt)."""

    def __init__(self, rows: list[Row]) -> None:
        self.rows = rows
        self.prompt_seen = False

    def put(self, value: Any) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        for row, t in zip(self.rows, value.reshape(-1).tolist(), strict=True):
            if not row.done:
                row.out.append(int(t))
                if row.on_token is not None:
                    row.on_token(int(t))

    def end(self) -> None:
        pass


class HermesEngine:
    def __init__(self, source: str, device: str = "auto", dtype: str = "auto",
                 trust_remote_code: bool = False) -> None:
        self.source = source
        self.device_cfg = device
        self.dtype_cfg = dtype
        self.trust_remote_code = trust_remote_code
        self.model: Any = None
        self.tokenizer: Any = None
        self.device = "cpu"
        self.quantization: str | None = None
        self.adapters: dict[str, str] = {}
        self.active_adapter: str | None = None
        self.where = "unloaded"  # unloaded | device | offloaded
        self.load_s: float | None = None

    # --- loading ------------------------------------------------------------------------
    @property
    def path(self) -> Path | None:
        p = Path(self.source).expanduser()
        return p if _looks_like_path(self.source) else None

    def model_file_exists(self) -> bool:
        p = self.path
        return bool(p and (p / "config.json").is_file()) if p else True

    def load(self) -> None:
        # gptqmodel (imported by transformers for GPTQ folders) aborts on 2-core machines
        # unless told how many CPU workers to use
        os.environ.setdefault("GPTQMODEL_CPU_WORKERS", str(min(2, os.cpu_count() or 1)))
        with quiet():  # banners and "Loading weights" bars; our log line says it loaded
            self._load()

    def _load(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        t0 = time.perf_counter()
        src = check_source(self.source)
        self.device = resolve_device(self.device_cfg, "[plugins.hermes].device")
        qcfg = self._quantization_config(src)
        self.quantization = qcfg.get("quant_method") if qcfg else None
        kw: dict[str, Any] = {"local_files_only": True,
                              "trust_remote_code": self.trust_remote_code}
        if self.quantization:
            kw["device_map"] = {"": self.device}
        else:
            dt = self.dtype_cfg
            if dt == "auto":
                dt = "float16" if self.device.startswith("cuda") else "float32"
            kw["dtype"] = getattr(torch, dt)
        try:
            tok = AutoTokenizer.from_pretrained(src, local_files_only=True,
                                                trust_remote_code=self.trust_remote_code)
            model = AutoModelForCausalLM.from_pretrained(src, **kw)
        except OSError as e:
            raise ModelError(f"hermes model {self.source!r} could not be loaded offline: {e}. "
                             f"Nothing downloads at run time: put it in the local cache or "
                             f"{TINY_HINT}") from None
        except ImportError as e:
            raise ModelError(f"hermes model {self.source!r} needs a missing package: {e}") from None
        if not self.quantization:
            # transformers wraps PreTrainedModel.to in a decorator whose type loses `self`
            model = model.to(self.device)  # type: ignore[arg-type]
        model.eval()
        self.model, self.tokenizer, self.where = model, tok, "device"
        for name, path in list(self.adapters.items()):
            self._attach(name, path)
        if self.active_adapter:
            self.model.set_adapter(self.active_adapter)
        self.load_s = time.perf_counter() - t0

    def _quantization_config(self, src: Path | str) -> dict[str, Any] | None:
        if isinstance(src, Path):
            try:
                cfg = json.loads((src / "config.json").read_text())
            except (OSError, ValueError) as e:
                raise ModelError(f"wrong model format in {src}: config.json unreadable: {e}") from None
            q = cfg.get("quantization_config")
            return q if isinstance(q, dict) else None
        from transformers import AutoConfig

        try:
            cfg = AutoConfig.from_pretrained(src, local_files_only=True)
        except OSError as e:
            raise ModelError(f"hermes model {src!r} is not in the local cache ({e}); "
                             f"nothing downloads at run time: {TINY_HINT}") from None
        q = getattr(cfg, "quantization_config", None)
        return q if isinstance(q, dict) else (q.to_dict() if q is not None else None)

    @property
    def loaded(self) -> bool:
        return self.model is not None and self.where == "device"

    @property
    def context_length(self) -> int | None:
        """Positions the model has (prompt and new tokens together); None when unknown."""
        cfg = getattr(self.model, "config", None)
        for key in ("max_position_embeddings", "n_positions", "max_sequence_length"):
            n = getattr(cfg, key, None)
            if isinstance(n, int) and n > 0:
                return n
        return None

    # --- pause / resume -----------------------------------------------------------------
    def pause_mode(self, configured: str) -> str:
        if configured != "auto":
            return configured
        if self.quantization or not self.device.startswith("cuda"):
            return "drop"
        return "offload"

    def release(self, mode: str) -> None:
        """Free accelerator memory: `offload` (weights to CPU RAM) or `drop` (forget them)."""
        if self.model is None:
            return
        if mode == "offload":
            self.model.to("cpu")
            self.where = "offloaded"
        else:
            self.model = None
            self.where = "unloaded"
        gc.collect()
        self._empty_cache()

    def restore(self) -> None:
        if self.model is not None and self.where == "offloaded":
            self.model.to(self.device)
            self.where = "device"
        elif self.model is None:
            self.load()

    def _empty_cache(self) -> None:
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()
            torch.cuda.empty_cache()

    def bytes_resident(self) -> int:
        """Bytes of weights and buffers on the model's device (0 when paused)."""
        if self.model is None or self.where != "device":
            return 0
        n = 0
        for t in list(self.model.parameters()) + list(self.model.buffers()):
            n += t.numel() * t.element_size()
        return n

    # --- adapters -----------------------------------------------------------------------
    def _attach(self, name: str, path: str) -> None:
        from peft import PeftModel

        if not isinstance(self.model, PeftModel):
            self.model = PeftModel.from_pretrained(self.model, path, adapter_name=name)
        elif name not in self.model.peft_config:
            self.model.load_adapter(path, adapter_name=name)
        self.model.eval()

    def load_adapter(self, name: str, path: str, activate: bool = True) -> None:
        p = Path(path).expanduser()
        if not (p / "adapter_config.json").is_file():
            raise BadRequest(f"not a PEFT adapter folder (no adapter_config.json): {p}", field="path")
        if self.model is None:
            raise Unavailable("hermes model not loaded")
        if name in self.adapters:
            self.unload_adapter(name)
        self._attach(name, str(p))
        self.adapters[name] = str(p)
        if activate:
            self.set_adapter(name)

    def set_adapter(self, name: str | None) -> None:
        if name is not None:
            if name not in self.adapters:
                raise BadRequest(f"unknown adapter {name!r} (loaded: {sorted(self.adapters)})",
                                 field="name")
            self.model.set_adapter(name)
        self.active_adapter = name

    def unload_adapter(self, name: str) -> None:
        if name not in self.adapters:
            raise BadRequest(f"unknown adapter {name!r} (loaded: {sorted(self.adapters)})",
                             field="name")
        del self.adapters[name]
        if self.active_adapter == name:
            self.active_adapter = None
        if self.model is None:
            return
        if self.adapters:
            if self.active_adapter is None or self.model.active_adapter == name:
                self.model.set_adapter(next(iter(self.adapters)))
            self.model.delete_adapter(name)
            if self.active_adapter:
                self.model.set_adapter(self.active_adapter)
        else:
            self.model = self.model.unload()  # the plain base model, LoRA layers removed

    # --- generation ---------------------------------------------------------------------
    def encode_prompt(self, prompt: str, *, chat: bool, system: str, limit: int) -> list[int]:
        tok = self.tokenizer
        if chat and getattr(tok, "chat_template", None):
            msgs = ([{"role": "system", "content": system}] if system else [])
            msgs.append({"role": "user", "content": prompt})
            text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
            ids = tok(text, add_special_tokens=False)["input_ids"]
        else:
            ids = tok(prompt)["input_ids"]
        if len(ids) > limit:
            raise BadRequest(f"prompt too long: {len(ids)} tokens, the limit is {limit}",
                             field="prompt", tokens=len(ids), limit=limit)
        return list(ids)

    def decode(self, ids: list[int]) -> str:
        return str(self.tokenizer.decode(ids, skip_special_tokens=True))

    def generate(self, prompt_ids: list[int], *, max_new_tokens: int, temperature: float | None,
                 top_p: float | None, on_token: Callable[[int], None] | None,
                 stop_flag: threading.Event, repetition_penalty: float = 1.0,
                 no_repeat_ngram_size: int = 0) -> list[int]:
        """Generate for one prompt (greedy unless temperature > 0); returns the new ids."""
        row = Row(prompt_ids, max_new_tokens, stop_flag, on_token)
        self.generate_batch([row], temperature=temperature, top_p=top_p,
                            repetition_penalty=repetition_penalty,
                            no_repeat_ngram_size=no_repeat_ngram_size)
        return row.out

    def eos_ids(self) -> frozenset[int]:
        """The token ids that end a generation (the model's generation config's)."""
        eos = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        if eos is None:
            eos = self.tokenizer.eos_token_id
        return frozenset([eos] if isinstance(eos, int) else (eos or []))

    def generate_batch(self, rows: list[Row], *, temperature: float | None, top_p: float | None,
                       repetition_penalty: float = 1.0, no_repeat_ngram_size: int = 0) -> None:
        """Generate for several prompts at once (left-padded, one forward pass per step for
        all of them). Each row stops at its own `max_new_tokens`, its `stop_flag` or an end
        token and is then finished; every row is finished when this returns."""
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        if not self.loaded:
            raise Unavailable("hermes model not loaded")
        eos = self.eos_ids()

        class _Stop(StoppingCriteria):
            """Per row: its own limit, its stop flag, or an end token (checked after each
            step's tokens reached the rows)."""

            def __call__(self, input_ids: Any, scores: Any, **kw: Any) -> Any:
                for row in rows:
                    if not row.done and (row.stop_flag.is_set()
                                         or len(row.out) >= row.max_new_tokens
                                         or (row.out and row.out[-1] in eos)):
                        row.finish()
                return torch.tensor([row.done for row in rows], dtype=torch.bool,
                                    device=input_ids.device)

        temperature, top_p = sampling(temperature, top_p)
        sample = temperature > 0
        pad = self.tokenizer.pad_token_id
        if pad is None:
            pad = min(eos) if eos else 0
        kw: dict[str, Any] = {"max_new_tokens": max(r.max_new_tokens for r in rows),
                              "do_sample": sample, "pad_token_id": pad,
                              "stopping_criteria": StoppingCriteriaList([_Stop()]),
                              "streamer": _RowStreamer(rows)}
        if repetition_penalty != 1.0:
            kw["repetition_penalty"] = repetition_penalty
        if no_repeat_ngram_size > 0:
            kw["no_repeat_ngram_size"] = no_repeat_ngram_size
        if sample:
            kw["temperature"] = temperature
            if top_p is not None:
                kw["top_p"] = top_p
        else:
            kw.update(temperature=None, top_p=None, top_k=None)
        width = max(len(r.prompt_ids) for r in rows)
        ids = torch.tensor([[pad] * (width - len(r.prompt_ids)) + r.prompt_ids for r in rows],
                           device=self.device)
        mask = torch.tensor([[0] * (width - len(r.prompt_ids)) + [1] * len(r.prompt_ids)
                             for r in rows], device=self.device)
        try:
            with torch.inference_mode(), self._adapter_scope():
                self.model.generate(input_ids=ids, attention_mask=mask, **kw)
        except torch.OutOfMemoryError:
            self._empty_cache()
            raise ServiceError("hermes ran out of accelerator memory; try a shorter prompt or "
                               "max_length, or give the model more memory", code=503) from None
        for row in rows:  # normally finished by `_Stop` already; an error leaves them open
            row.finish()

    def _adapter_scope(self) -> Any:
        import contextlib

        from peft import PeftModel

        if isinstance(self.model, PeftModel) and self.active_adapter is None:
            return self.model.disable_adapter()
        return contextlib.nullcontext()
