"""The phi3 model: an ONNX Runtime GenAI folder, guided generation, and LoRA adapters as
`.onnx_adapter` files swapped per request. Synchronous: the actor calls it from a thread."""

from __future__ import annotations

import contextlib
import gc
import json
import threading
import time
from pathlib import Path
from typing import Any

from osiris_core.errors import BadRequest, ServiceError, Unavailable

from .guidance import Guidance

TINY_HINT = "run 'osiris models tiny DIR' and point [plugins.phi3].model at DIR/phi3-onnx"
BASE_ADAPTER = "osiris_lora_base.onnx_adapter"  # the folder's all-zero "no adapter" state
BASE = "__base__"


class ModelError(Unavailable):
    """The model cannot be loaded (missing folder, wrong format …): 503 with the cause."""


def check_folder(path: Path) -> None:
    if not path.exists():
        raise ModelError(f"phi3 model folder not found: {path} ({TINY_HINT}, or set "
                         "[plugins.phi3].model to an ONNX Runtime GenAI folder)")
    if not path.is_dir():
        raise ModelError(f"phi3 model path is not a folder: {path}")
    if not (path / "genai_config.json").is_file():
        if (path / "config.json").is_file():
            raise ModelError(f"wrong model format in {path}: a Hugging Face folder; phi3 needs "
                             "an ONNX Runtime GenAI folder (build it with the GenAI model "
                             f"builder, or {TINY_HINT})")
        raise ModelError(f"wrong model format in {path}: no genai_config.json (phi3 needs an "
                         "ONNX Runtime GenAI folder)")


class Phi3Engine:
    def __init__(self, path: Path, provider: str = "auto") -> None:
        self.path = path
        self.provider_cfg = provider
        self.provider = "cpu"
        self.model: Any = None
        self.tokenizer: Any = None
        self.adapters: Any = None
        self.adapter_files: dict[str, str] = {}  # name → .onnx_adapter path
        self.has_lora_inputs = False
        self.context_length = 4096
        self.load_s: float | None = None
        self._adapter_lock = threading.Lock()

    def model_file_exists(self) -> bool:
        return (self.path / "genai_config.json").is_file()

    @property
    def loaded(self) -> bool:
        return self.model is not None

    def load(self) -> None:
        import onnxruntime_genai as og  # type: ignore[import-untyped, unused-ignore]

        t0 = time.perf_counter()
        check_folder(self.path)
        try:
            cfg_json = json.loads((self.path / "genai_config.json").read_text())
            self.context_length = int(cfg_json["model"]["context_length"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ModelError(f"wrong model format in {self.path}: bad genai_config.json ({e})") from None
        want = self.provider_cfg
        if want == "auto":
            want = "cuda" if og.is_cuda_available() else "cpu"
        if want == "cuda" and not og.is_cuda_available():
            raise ModelError("[plugins.phi3].provider is 'cuda' but this onnxruntime-genai build "
                             "or machine has no CUDA (install onnxruntime-genai-cuda)")
        try:
            config = og.Config(str(self.path))
            config.clear_providers()
            if want == "cuda":
                config.append_provider("cuda")
            model = og.Model(config)
            tokenizer = og.Tokenizer(model)
        except Exception as e:  # noqa: BLE001 - GenAI raises RuntimeError for all of these
            raise ModelError(f"phi3 model in {self.path} could not be loaded: {e}") from None
        self.provider = want
        self.model, self.tokenizer = model, tokenizer
        self.adapters = og.Adapters(model)
        base = self.path / BASE_ADAPTER
        self.has_lora_inputs = base.is_file()
        if self.has_lora_inputs:
            self.adapters.load(str(base), BASE)
        for name, file in self.adapter_files.items():
            self.adapters.load(file, name)
        self.load_s = time.perf_counter() - t0

    def release(self) -> None:
        self.adapters = None
        self.tokenizer = None
        self.model = None
        gc.collect()

    # --- adapters -----------------------------------------------------------------------
    def load_adapter(self, name: str, file: str) -> None:
        p = Path(file).expanduser()
        if not p.is_file():
            raise BadRequest(f"adapter file not found: {p}", field="path")
        if not self.has_lora_inputs:
            raise BadRequest(f"the phi3 model in {self.path} has no LoRA inputs (build it with "
                             "osiris-models so adapters can be swapped)", field="path")
        if not self.loaded:
            raise Unavailable("phi3 model not loaded")
        with self._adapter_lock:
            if name in self.adapter_files:
                self.adapters.unload(name)
            try:
                self.adapters.load(str(p), name)
                self._smoke(name)
            except Exception as e:  # noqa: BLE001
                self.adapter_files.pop(name, None)
                with contextlib.suppress(Exception):
                    self.adapters.unload(name)
                raise BadRequest(f"adapter {p} does not fit this model: {e}", field="path") from None
            self.adapter_files[name] = str(p)

    def _smoke(self, name: str) -> None:
        """One token with the adapter active. `Adapters.load` reads any file; a tensor the
        graph has no input for (or of the wrong type) only fails at generation — here, not
        in a user's request."""
        import onnxruntime_genai as og  # type: ignore[import-untyped, unused-ignore]

        params = og.GeneratorParams(self.model)
        params.set_search_options(max_length=2, do_sample=False)
        gen = og.Generator(self.model, params)
        gen.set_active_adapter(self.adapters, name)
        gen.append_tokens([0])
        gen.generate_next_token()

    def unload_adapter(self, name: str) -> None:
        with self._adapter_lock:
            if name not in self.adapter_files:
                raise BadRequest(f"unknown adapter {name!r}", field="name")
            del self.adapter_files[name]
            if self.adapters is not None:
                self.adapters.unload(name)

    # --- generation ---------------------------------------------------------------------
    def encode(self, text: str, max_new: int) -> list[int]:
        ids = [int(t) for t in self.tokenizer.encode(text)]
        limit = self.context_length - max_new
        if len(ids) > limit:
            raise BadRequest(f"prompt too long: {len(ids)} tokens, the limit is {limit} "
                             f"(context {self.context_length} - max_length {max_new})",
                             field="prompt", tokens=len(ids), limit=limit)
        return ids

    def generate(self, ids: list[int], *, max_new: int, schema: str | None,
                 adapter: str | None, temperature: float | None = None,
                 top_p: float | None = None, seed: int | None = None,
                 repetition_penalty: float = 1.0,
                 guidance: Guidance | None = None) -> tuple[list[int], str]:
        """Generate after `ids` → (new token ids, their text). `schema`: phi3's own JSON
        schema (a proposal's); `guidance`: a caller's grammar, whose failing to compile is
        the caller's `BadRequest` naming its field (ours failing stays a 500)."""
        import onnxruntime_genai as og  # type: ignore[import-untyped, unused-ignore]

        if schema is not None and guidance is not None:
            raise ValueError("generate takes schema or guidance, not both")
        kind_text = (guidance.kind, guidance.text) if guidance is not None else (
            ("json_schema", schema) if schema is not None else None)
        if not self.loaded:
            raise Unavailable("phi3 model not loaded")
        params = og.GeneratorParams(self.model)
        opts: dict[str, Any] = {"max_length": len(ids) + max_new}
        if repetition_penalty != 1.0:
            opts["repetition_penalty"] = float(repetition_penalty)
        if temperature:
            opts.update(do_sample=True, temperature=float(temperature), top_k=0)
            if top_p is not None:
                opts["top_p"] = float(top_p)
            if seed is not None:
                opts["random_seed"] = int(seed)
        else:
            opts["do_sample"] = False
        params.set_search_options(**opts)
        try:
            if kind_text is not None:
                params.set_guidance(*kind_text)
            try:
                gen = og.Generator(self.model, params)  # llguidance compiles the grammar here
            except RuntimeError as e:
                refused = guidance.refusal(e) if guidance is not None else None
                if refused is not None:
                    raise refused from None
                raise
            name = adapter or (BASE if self.has_lora_inputs else None)
            if name is not None:
                gen.set_active_adapter(self.adapters, name)
            gen.append_tokens(ids)
            out: list[int] = []
            while not gen.is_done():
                gen.generate_next_token()
                out.append(int(gen.get_next_tokens()[0]))
        except RuntimeError as e:
            if "out of memory" in str(e).lower() or "Failed to allocate" in str(e):
                raise ServiceError(f"phi3 ran out of memory: {e}", code=503) from None
            raise
        return out, self.decode(out)

    def decode(self, ids: list[int]) -> str:
        """Text of `ids` without end-of-text tokens. The streaming decoder drops bytes that
        are not valid UTF-8 (a random model makes some) where `decode` would stop there."""
        eos = self._eos()
        stream = self.tokenizer.create_stream()
        return "".join(stream.decode(t) for t in ids if t not in eos)

    def ended(self, ids: list[int]) -> bool:
        """Whether a generation stopped on its own (end-of-text last) rather than at
        max_length: a guided one ends so once its grammar is complete."""
        return bool(ids) and ids[-1] in self._eos()

    def _eos(self) -> set[int]:
        try:
            cfg = json.loads((self.path / "genai_config.json").read_text())
            e = cfg["model"].get("eos_token_id", [])
            return set(e if isinstance(e, list) else [e])
        except (OSError, ValueError, KeyError):
            return set()
