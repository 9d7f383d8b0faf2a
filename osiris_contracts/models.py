"""What every model actor (hermes, phi3, tts) says about itself in `facts()`, typed for the
packages that read it: the gateway's /health, the gpu supervisor and the dgm."""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = ["ModelFacts"]


class ModelFacts(msgspec.Struct, kw_only=True):
    """The facts of a model actor that other packages read: the gateway's /health and the gpu
    supervisor. A model actor's `facts()` starts from `ModelFacts(...).to_dict()` and adds its
    own keys; readers take `ModelFacts.read(status.facts)` instead of indexing the dict."""

    loaded: bool | None = None
    device: str | None = None
    """e.g. "cpu", "cuda:0" (an ONNX Runtime provider for phi3)."""
    adapter: str | None = None
    """The active LoRA adapter, if any."""
    model_path: str | None = None
    model_file_exists: bool | None = None
    bytes_resident: int | None = None
    """Accelerator (or host) bytes the loaded model holds; 0 when unloaded or paused."""

    @classmethod
    def read(cls, facts: dict[str, Any] | None) -> ModelFacts:
        """The typed view of an `ActorStatus.facts` dict; other keys are ignored, a key of the
        wrong type reads as absent."""
        out = cls()
        for f in msgspec.structs.fields(cls):
            try:
                setattr(out, f.name, msgspec.convert((facts or {}).get(f.name), f.type,
                                                     strict=False))
            except msgspec.ValidationError:
                continue
        return out

    def to_dict(self) -> dict[str, Any]:
        return msgspec.structs.asdict(self)
