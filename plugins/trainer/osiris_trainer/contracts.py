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


class ReportsRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The newest training runs' records (the review desk's Learning view)."""

    limit: int = 50


class TrainReports(msgspec.Struct, kw_only=True):
    """Every trained adapter's record, newest first — its `report.json`: version, published,
    reason, created, examples, metrics, phases_s and the served `report` (the gate's table) —
    and which version is live."""

    reports: list[dict[str, Any]]
    live: str | None = None
    live_served_agreement: dict[str, float] | None = None


TRAINER_TRAIN = Subject(
    "osiris.trainer.train", "service", "trainer", TrainRequest, TrainResult,
    description="train an adapter from feedback corrections now; publish it if it passes the gate",
)
TRAINER_REPORTS = Subject(
    "osiris.trainer.reports", "service", "trainer", ReportsRequest, TrainReports,
    description="every trained adapter's report (gate table, published or refused and why)",
    idempotent=True,
)
