"""osiris-phi3: the `phi3` actor (ONNX Runtime GenAI, JSON-schema guided trade proposals,
hot-swapped LoRA adapters) on `osiris.phi3.generate`, with raw (`complete`), caller-guided
(`guided`) and scoring (`score`) services."""

from __future__ import annotations

from typing import Any

from osiris_contracts.subjects import register_shared
from osiris_core import hookimpl
from osiris_core.nats.grants import NatsGrant

from .config import Phi3Config
from .contracts import PHI3_COMPLETE, PHI3_GUIDED, PHI3_SCORE

__all__ = ["PHI3_COMPLETE", "PHI3_GUIDED", "PHI3_SCORE", "Phi3Config"]


@hookimpl
def register_config(register: Any) -> None:
    register(Phi3Config)


@hookimpl
def register_subjects(register: Any) -> None:
    register_shared(register)  # the application's catalogue
    register(PHI3_COMPLETE)
    register(PHI3_GUIDED)
    register(PHI3_SCORE)


@hookimpl
def register_actors(register: Any) -> None:
    from .actor import Phi3

    register(Phi3)


@hookimpl
def register_demo(register: Any) -> None:
    def prepare(data_dir: Any, options: Any) -> dict[str, Any]:
        from osiris_models import demo_models  # type: ignore[import-untyped, unused-ignore]

        models = demo_models(data_dir, tiny=options.tiny, progress=lambda m: print(f"  {m}"))
        # few-shot off on the small model: its three newest corrections, shown without the
        # situations they corrected, are copied, and lowered held-out agreement below the
        # base model's on both house policies (docs/models.md); the trainer matches it
        return {"model": str(models.phi3), "provider": "cpu",
                **({"few_shot": 0} if models.kind == "small" else {})}

    register(prepare)


@hookimpl
def register_nats_role(register: Any) -> None:
    """This plugin's NATS user and what it calls (`osiris nats-config`)."""
    from osiris_contracts.subjects import STORE_QUERY

    register(NatsGrant("models", requests=(STORE_QUERY.name,),
                       description="phi3: proposals (reads feedback for few-shot, loads adapters)"))
