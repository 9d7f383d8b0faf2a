"""osiris-orchestrator: the policy loop. Buffers market ticks, runs the workflow of seed 002
(phi3 proposal → risk gate → hermes assessment → events → run record) and serves
`osiris.proposals.propose`; `osiris orchestrate` runs it from the command line."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from osiris_contracts.subjects import register_subjects as register_subjects
from osiris_core import hookimpl
from osiris_core.nats.grants import NatsGrant

from .actor import OrchestratorActor
from .config import OrchestratorConfig, RiskConfig

__all__ = ["OrchestratorActor", "OrchestratorConfig", "RiskConfig"]


@hookimpl
def register_config(register: Callable[[type[OrchestratorConfig]], None]) -> None:
    register(OrchestratorConfig)


@hookimpl
def register_actors(register: Callable[[type[Any]], None]) -> None:
    register(OrchestratorActor)


@hookimpl
def register_commands(cli: click.Group) -> None:
    from .cli import orchestrate

    cli.add_command(orchestrate)


def prepare_demo(data_dir: object) -> dict[str, Any]:
    """The demo's tiny random models rarely propose within production limits: loosen the
    gate so that some proposals pass (and get assessed and spoken) while others are rejected."""
    return {"ticks_per_proposal": 10, "speak": True,
            "risk": {"min_stop_pct": 0.0, "max_stop_pct": 100.0, "max_target_pct": 1000.0,
                     "min_reward_risk": 0.0, "min_confidence": 0.5, "allowed_sides": []}}


@hookimpl
def register_demo(register: Callable[..., None]) -> None:
    register(prepare_demo, hints=[(
        "curl -s -X POST {gateway}/propose_trade_adjustments/ -H 'content-type: "
        "application/json' -d '{{\"prompt\": \"XYZ gapped up on volume\"}}'",
        "a proposal, the risk gate and hermes' assessment")])


@hookimpl
def register_nats_role(register: Any, config: OrchestratorConfig) -> None:
    """This plugin's NATS user and what it calls (`osiris nats-config`)."""
    from osiris_contracts.subjects import HERMES_GENERATE, PHI3_GENERATE, TTS_SPEAK

    register(NatsGrant(
        "orchestrator", requests=(PHI3_GENERATE.name, HERMES_GENERATE.name, TTS_SPEAK.name),
        subscribes=(config.market_channel,),
        kv_buckets=(config.policy_bucket,) if config.policy_bucket else (),
        description="ticks → proposals, the risk gate, run records"))
