"""The trainer's own subject and messages."""

from __future__ import annotations

from typing import Any

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
    report: dict[str, Any] = {}
    """Held-out decision fields as phi3 serves them, per configuration — constant (the best
    constant answer), base, few_shot, live, candidate; lab_base and lab (the trainer's own
    copy, a diagnostic) with `report_lab` — each with n, valid, agreement {mean, lo, hi} and
    per-field agreement; and gate {passed, reason, diff {mean, lo, hi}}."""
    started: str = ""
    finished: str = ""


TRAINER_TRAIN = Subject(
    "osiris.trainer.train", "service", "trainer", TrainRequest, TrainResult,
    description="train an adapter from feedback corrections now; publish it if it passes the gate",
)
