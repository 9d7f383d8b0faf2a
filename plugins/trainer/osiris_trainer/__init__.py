"""osiris-trainer: the `trainer` actor. Turns feedback corrections into a LoRA adapter for
phi3 (SFT, then DPO against the original proposals; QLoRA on CUDA), keeps it only if it beats
the adapter in service on held-out corrections, exports it to `.onnx_adapter` and publishes
it on `osiris.adapters.published`, where phi3 hot-loads it. `osiris train [--now]`."""

from __future__ import annotations

from typing import Any

from osiris_contracts.subjects import register_shared
from osiris_core import hookimpl
from osiris_core.nats.grants import NatsGrant

from .config import TrainerConfig
from .contracts import TRAINER_REPORTS, TRAINER_TRAIN, TrainRequest, TrainResult

__all__ = ["TRAINER_REPORTS", "TRAINER_TRAIN", "TrainRequest", "TrainResult", "TrainerConfig"]


@hookimpl
def register_config(register: Any) -> None:
    register(TrainerConfig)


@hookimpl
def register_subjects(register: Any) -> None:
    register_shared(register)  # the application's catalogue
    register(TRAINER_TRAIN)
    register(TRAINER_REPORTS)


@hookimpl
def register_actors(register: Any) -> None:
    from .actor import TrainerActor

    register(TrainerActor)


@hookimpl
def register_routes(register: Any) -> None:
    from .routes import TrainerController  # litestar is there only where the gateway runs

    register(TrainerController)


@hookimpl
def register_commands(cli: Any) -> None:
    from .cli import train

    cli.add_command(train)


@hookimpl
def register_demo(register: Any) -> None:
    def prepare(data_dir: Any, options: Any) -> dict[str, Any]:
        from osiris_models import demo_models

        from .config import settings_for

        m = demo_models(data_dir, tiny=options.tiny, progress=lambda m: print(f"  {m}"))
        # the demo trains on request (`osiris train --now`), not at 02:00, with its market
        # paused meanwhile: on a laptop the simulated loop would take the CPU training needs
        return {**settings_for(m.kind, str(m.trainer_base), m.export_precision,
                               m.target_modules, str(m.phi3)), "pause_while_training": ["sim"]}

    register(prepare, hints=[("train --now",
                              "corrections sent to /feedback/phi3/ → an adapter for phi3")])


@hookimpl
def register_nats_role(register: Any) -> None:
    """This plugin's NATS user and what it calls (`osiris nats-config`)."""
    register(NatsGrant(
        "trainer", requests=("osiris.phi3.score",), controls=("sim",),
        description="feedback → adapters scored where phi3 serves (osiris.phi3.score), "
                    "published on osiris.adapters.published; pauses the sim while it trains"))
    register(NatsGrant(  # its gateway routes (the desk's train now and reports)
        "gateway", requests=(TRAINER_TRAIN.name, TRAINER_REPORTS.name), runs_actors=False))
