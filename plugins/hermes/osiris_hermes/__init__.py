"""osiris-hermes: the `hermes` actor (transformers causal LM, fp or GPTQ, with token streaming
and PEFT adapters) on `osiris.hermes.generate`."""

from __future__ import annotations

from typing import Any

from osiris_core import hookimpl

from .config import HermesConfig

__all__ = ["HermesConfig"]


@hookimpl
def register_config(register: Any) -> None:
    register(HermesConfig)


@hookimpl
def register_actors(register: Any) -> None:
    from .actor import Hermes

    register(Hermes)


@hookimpl
def register_demo(register: Any) -> None:
    def prepare(data_dir: Any) -> dict[str, Any]:
        from osiris_models import build_tiny, default_tiny_dir

        root = build_tiny(default_tiny_dir(data_dir), progress=lambda m: print(f"  {m}"))
        return {"model": str(root / "hermes"), "device": "cpu"}

    register(prepare)
