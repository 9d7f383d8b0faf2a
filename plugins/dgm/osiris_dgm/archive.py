"""The kernel's archive on disk: one folder per variant (its policy source and record) under
`data_dir/dgm/variants`, the model reply caches, and DGM-style parent sampling."""

from __future__ import annotations

import json
import math
import os
import random
import statistics
from pathlib import Path
from typing import Any

import msgspec

from .contracts import Variant

__all__ = ["Archive", "ReplyCache"]

PARENT_DECISIONS = frozenset({"seed", "archived", "accepted", "shadow", "live", "kept"})


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class Archive:
    """Every variant ever proposed, with its source (the seed is variant "0")."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.variants: dict[str, Variant] = {}
        for rec in sorted(folder.glob("variants/*/record.json")):
            v = msgspec.json.decode(rec.read_bytes(), type=Variant)
            self.variants[v.id] = v

    def next_id(self) -> str:
        return str(max((int(k) for k in self.variants if k.isdigit()), default=-1) + 1)

    def source(self, vid: str) -> str:
        return (self.folder / "variants" / vid / "policy.py").read_text()

    def add(self, v: Variant, source: str | None) -> None:
        if source is not None:
            _write(self.folder / "variants" / v.id / "policy.py", source.encode())
        self.save(v)

    def save(self, v: Variant) -> None:
        v.revision += 1
        self.variants[v.id] = v
        _write(self.folder / "variants" / v.id / "record.json", msgspec.json.encode(v))

    def children(self, vid: str) -> int:
        return sum(1 for v in self.variants.values() if v.parent == vid)

    def scored(self) -> list[Variant]:
        return [v for v in self.variants.values()
                if v.decision in PARENT_DECISIONS and v.reward_full is not None]

    def best(self) -> Variant | None:
        scored = self.scored()
        return max(scored, key=lambda v: (v.reward_full or 0.0, -int(v.id))) if scored else None

    def choose_parent(self, rng: random.Random) -> Variant:
        """DGM's rule: P(parent) ∝ sigmoid(score above the median) / (1 + children)."""
        pool = sorted(self.scored(), key=lambda v: int(v.id) if v.id.isdigit() else 0)
        if not pool:
            raise LookupError("the archive has no scored variant")
        scores = [v.reward_full or 0.0 for v in pool]
        mid = statistics.median(scores)
        spread = (max(scores) - min(scores)) or 1.0
        weights = [1.0 / (1.0 + math.exp(-10.0 * (s - mid) / spread)) / (1.0 + self.children(v.id))
                   for v, s in zip(pool, scores, strict=True)]
        return rng.choices(pool, weights=weights, k=1)[0]


class ReplyCache:
    """Model replies by key (append-only JSON lines): the backtest's phi3 replies by prompt
    hash, the planners' by request, model and adapter; nothing is asked twice."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.replies: dict[str, dict[str, Any]] = {}
        if path.exists():
            for line in path.read_text().splitlines():
                try:
                    row = json.loads(line)
                    self.replies[row["key"]] = row["reply"]
                except (ValueError, KeyError):
                    continue  # a torn last line after a crash

    def put(self, key: str, reply: dict[str, Any]) -> None:
        self.replies[key] = reply
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            f.write(json.dumps({"key": key, "reply": reply}) + "\n")
