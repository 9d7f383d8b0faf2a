"""Chatterbox (Resemble AI) engine, imported lazily: it lives in its own environment.

`chatterbox-tts` pins torch 2.6, torchaudio 2.6 and an old transformers, so it cannot share
the main environment; `scripts/chatterbox-env.sh` builds one and runs `osiris run --only tts`
there, joining the same NATS. Nothing here imports torch or chatterbox until `load()`.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from pathlib import Path
from typing import Any

from .errors import EngineUnavailable

__all__ = ["CHECKPOINT_FILES", "HUB_REPO", "ChatterboxEngine"]

HUB_REPO = "ResembleAI/chatterbox"
CHECKPOINT_FILES = ("ve.safetensors", "t3_cfg.safetensors", "s3gen.safetensors",
                    "tokenizer.json", "conds.pt")
_SETUP = "see plugins/tts/README.md (scripts/chatterbox-env.sh builds its own environment)"


def _check_checkpoint(checkpoint: str) -> list[str]:
    if not checkpoint:
        return []
    path = Path(checkpoint).expanduser()
    if not path.is_dir():
        return [f"chatterbox checkpoint folder not found: {path} "
                "(set [plugins.tts] chatterbox_checkpoint to a folder holding "
                f"{', '.join(CHECKPOINT_FILES)})"]
    missing = [f for f in CHECKPOINT_FILES if not (path / f).is_file()]
    if missing:
        return [f"chatterbox checkpoint {path} lacks {', '.join(missing)}"]
    return []


class ChatterboxEngine:
    """Chatterbox at its native 24 kHz; `exaggeration` and voice cloning from `ref_wav`."""

    name = "chatterbox"
    supports_cloning = True

    def __init__(self, model: Any, device: str) -> None:
        self.model = model
        self.device = device
        self.sample_rate = int(model.sr)

    @classmethod
    def load(cls, checkpoint: str = "", device: str = "auto") -> ChatterboxEngine:
        """Load from a local folder, or from the hub cache when `checkpoint` is empty.

        Raises `EngineUnavailable` naming every missing piece (package, checkpoint) and the fix.
        """
        problems = _check_checkpoint(checkpoint)
        if importlib.util.find_spec("chatterbox") is None:
            problems.insert(0, "the 'chatterbox-tts' package is not installed in this environment "
                               f"(it pins torch 2.6, so it needs its own: {_SETUP})")
        if problems:
            raise EngineUnavailable("; ".join(problems))
        try:
            import torch
            from chatterbox.tts import ChatterboxTTS  # type: ignore[import-not-found, unused-ignore]
        except Exception as e:  # noqa: BLE001 - a broken install reads like any other import error
            raise EngineUnavailable(f"chatterbox-tts failed to import: {type(e).__name__}: {e} "
                                    f"({_SETUP})") from e
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            if checkpoint:
                model = ChatterboxTTS.from_local(str(Path(checkpoint).expanduser()), device)
            else:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never download at run time
                model = ChatterboxTTS.from_pretrained(device=device)
        except Exception as e:  # noqa: BLE001 - missing files, CUDA errors ... all say why
            where = checkpoint or f"the hub cache ({HUB_REPO}; HF_HUB_OFFLINE=1)"
            raise EngineUnavailable(
                f"chatterbox checkpoint could not be loaded from {where} on {device}: "
                f"{type(e).__name__}: {e} (download it once with "
                f"'huggingface-cli download {HUB_REPO}' or set [plugins.tts] "
                "chatterbox_checkpoint)") from e
        return cls(model, device)

    def synthesize(self, text: str, *, exaggeration: float = 0.5,
                   ref_wav: bytes | None = None) -> bytes:
        import torch

        prompt: str | None = None
        try:
            if ref_wav is not None:
                fd, prompt = tempfile.mkstemp(suffix=".wav", prefix="osiris-tts-ref-")
                with os.fdopen(fd, "wb") as f:
                    f.write(ref_wav)
            with torch.inference_mode():
                wav = self.model.generate(text, audio_prompt_path=prompt,
                                          exaggeration=exaggeration)
        finally:
            if prompt is not None:
                Path(prompt).unlink(missing_ok=True)
        samples = wav.squeeze().detach().float().clamp(-1.0, 1.0).cpu()
        return bytes((samples * 32767.0).round().to(torch.int16).numpy().astype("<i2").tobytes())

    def close(self) -> None:
        self.model = None
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except Exception:  # noqa: BLE001 - best effort on release
            pass
