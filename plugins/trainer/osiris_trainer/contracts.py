"""The trainer's own subject and messages."""

from __future__ import annotations

import msgspec

from osiris_core.subjects import Subject


class TrainRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Run one training cycle now."""

    force: bool = False
    """Train even when no correction arrived since the last run."""


class TrainResult(msgspec.Struct, kw_only=True):
    """What a training cycle did: published or not, and why, with its numbers."""

    published: bool
    reason: str
    version: str | None = None
    path: str | None = None
    examples: int = 0
    train_examples: int = 0
    eval_examples: int = 0
    metrics: dict[str, float] = {}
    phases_s: dict[str, float] = {}
    report: dict[str, dict[str, float]] = {}
    """Held-out scores per configuration — base, few_shot, adapter, adapter_few_shot (both
    left out when neither phi3 serves few-shot nor `report_few_shot` asks) and in_service
    (when an adapter was serving) — each with valid, agreement, loglik and n."""
    started: str = ""
    finished: str = ""


TRAINER_TRAIN = Subject(
    "osiris.trainer.train", "service", "trainer", TrainRequest, TrainResult,
    description="train an adapter from feedback corrections now; publish it if it passes the gate",
)
