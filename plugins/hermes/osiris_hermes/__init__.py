"""osiris-hermes: the `hermes` actor (transformers causal LM, fp or GPTQ, with token streaming
and PEFT adapters) on `osiris.hermes.generate`."""

from __future__ import annotations

from typing import Any

from osiris_contracts.subjects import register_subjects as register_subjects
from osiris_core import hookimpl
from osiris_core.nats.grants import NatsGrant

from .config import HermesConfig

__all__ = ["HermesConfig"]

DEMO_SYSTEM = ("You are a careful risk analyst. Answer in two or three plain English sentences: "
               "the main risk of the trade, and whether its stop and target make sense.")


@hookimpl
def register_config(register: Any) -> None:
    register(HermesConfig)


@hookimpl
def register_actors(register: Any) -> None:
    from .actor import Hermes

    register(Hermes)


@hookimpl
def register_demo(register: Any) -> None:
    def prepare(data_dir: Any, options: Any) -> dict[str, Any]:
        from osiris_models import demo_models

        models = demo_models(data_dir, tiny=options.tiny, progress=lambda m: print(f"  {m}"))
        out: dict[str, Any] = {"model": str(models.hermes), "device": "cpu"}
        if models.kind == "small":
            out["system_prompt"] = DEMO_SYSTEM
        return out

    register(prepare)


@hookimpl
def register_nats_role(register: Any) -> None:
    """This plugin's NATS user and what it calls (`osiris nats-config`)."""
    register(NatsGrant("models", description="hermes: free-text generation"))
