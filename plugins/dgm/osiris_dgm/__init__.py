"""osiris-dgm: the self-improvement kernel (seed 001's DGM kernel) for the orchestrator's
policy module — planners (`nop`, `null`, `mutate`, `llm`, and the `osiris.dgm.plan` service),
a sandboxed, hash-pinned, deterministic backtest reward with a paired bootstrap, an archive
with DGM-style parent sampling, shadow runs, promotion and automatic rollback.
`osiris dgm [--once] [--iterations N] [--planner NAME]`, `osiris dgm archive`,
`osiris dgm rollback [VARIANT]`."""

from __future__ import annotations

from typing import Any

from osiris_contracts.subjects import register_shared
from osiris_core import hookimpl
from osiris_core.nats.grants import NatsGrant

from .config import DgmConfig
from .contracts import DGM_PLAN, DGM_ROLLBACK, DGM_RUN

__all__ = ["DgmConfig"]


@hookimpl
def register_hookspecs(register: Any) -> None:
    from . import hookspecs

    register(hookspecs)  # register_planners


@hookimpl
def register_config(register: Any) -> None:
    register(DgmConfig)


@hookimpl
def register_subjects(register: Any) -> None:
    register_shared(register)  # the application's catalogue
    for s in (DGM_PLAN, DGM_RUN, DGM_ROLLBACK):
        register(s)


@hookimpl
def register_actors(register: Any, config: DgmConfig) -> None:
    from .actor import DgmActor, PlannerActor

    register(DgmActor)
    if config.serve_planners:
        register(PlannerActor)


@hookimpl
def register_routes(register: Any) -> None:
    from .routes import DgmController  # litestar is there only where the gateway runs

    register(DgmController)


@hookimpl
def register_commands(cli: Any) -> None:
    from .cli import dgm

    cli.add_command(dgm)


@hookimpl
def register_demo(register: Any) -> None:
    def prepare(data_dir: Any) -> dict[str, Any]:
        # the sim's demo market (data_dir/market/sim.csv) is the default CSV; its last 20%
        # (40 decisions) keeps the first scoring short on the small model (one phi3 reply each)
        return {"holdout_fraction": 0.2}

    register(prepare, hints=[("dgm --iterations 5 --planner mutate",
                              "self-improvement of the policy: archive, shadow, promotion")])


@hookimpl
def register_nats_role(register: Any) -> None:
    """This plugin's NATS user and what it calls (`osiris nats-config`)."""
    register(NatsGrant(
        "dgm", requests=("osiris.phi3.generate", "osiris.phi3.guided", "osiris.hermes.generate",
                         DGM_PLAN.name),
        controls=("orchestrator", "phi3"),
        description="policy self-improvement: reads phi3 (its edits under a grammar, "
                    "osiris.phi3.guided), applies policies through the orchestrator's "
                    "control subject"))
    register(NatsGrant("gateway", requests=(DGM_ROLLBACK.name,), runs_actors=False))  # its route
