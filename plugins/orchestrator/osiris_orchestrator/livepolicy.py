"""The orchestrator's policy slots (live, shadow, previous) and their live outcomes.

Slots are persisted under `data_dir/<policy_dir>` (one file per variant plus `slots.json`) so
a restart serves the same live policy. Swaps happen between workflow runs: a run takes its
policy when it starts and finishes on it. Both the old and the new version stay loaded, so a
rollback is instant (as OTP keeps two versions of a module).

`LiveTracker` opens a virtual position (`ledger.Trade`) for every approved decision of the
live and the shadow policy and walks it on the ticks that follow; once both sides of a run
are closed the pair's returns become one `outcome` — the paired data the dgm kernel tests
a promotion or a rollback on.
"""

from __future__ import annotations

import json
import os
import time
from collections import deque
from pathlib import Path
from typing import Any

from osiris_contracts.messages import MarketTick

from .contracts import PolicyOutcome
from .ledger import Trade, open_trade
from .policy import Policy, default_source, load_policy

__all__ = ["LiveTracker", "PolicySlots"]

_VARIANT_OK = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


def check_variant(name: str) -> str:
    if not name or len(name) > 64 or not set(name) <= _VARIANT_OK or name.startswith("."):
        raise ValueError(f"variant name {name!r}: 1–64 letters, digits, '-', '_', '.'")
    return name


class PolicySlots:
    """live / shadow / previous policies, persisted in `folder`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.live: Policy = load_policy("0", default_source())
        self.shadow: Policy | None = None
        self.previous: Policy | None = None
        self.changed = time.time()
        self.load_error: str | None = None
        self._restore()

    def _path(self, variant: str) -> Path:
        return self.folder / f"{check_variant(variant)}.py"

    def _restore(self) -> None:
        state = self.folder / "slots.json"
        if not state.exists():
            return
        try:
            names = json.loads(state.read_text())
            for slot in ("live", "shadow", "previous"):
                name = names.get(slot)
                if name:
                    setattr(self, slot, self._load(name))
        except Exception as e:  # noqa: BLE001 - a bad file falls back to variant 0, loudly
            self.load_error = f"{state}: {type(e).__name__}: {e}; serving variant 0"
            self.live, self.shadow, self.previous = load_policy("0", default_source()), None, None

    def _load(self, variant: str) -> Policy:
        if variant == "0":
            return load_policy("0", default_source())
        return load_policy(variant, self._path(variant).read_text())

    def _save(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        for p in (self.live, self.shadow, self.previous):
            path = self._path(p.variant) if p is not None and p.variant != "0" else None
            if p is not None and path is not None and (
                    not path.exists() or path.read_text() != p.source):
                self._write(path, p.source)
        self._write(self.folder / "slots.json", json.dumps({
            "live": self.live.variant, "shadow": self.shadow and self.shadow.variant,
            "previous": self.previous and self.previous.variant, "changed": self.changed}))

    @staticmethod
    def _write(path: Path, text: str) -> None:
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)

    def known(self, variant: str) -> Policy | None:
        for p in (self.live, self.shadow, self.previous):
            if p is not None and p.variant == variant:
                return p
        if variant == "0" or self._path(variant).exists():
            return self._load(variant)
        return None

    def set_shadow(self, variant: str, source: str | None) -> Policy:
        """Load a variant beside the live one (raises PolicyViolation / ValueError)."""
        check_variant(variant)
        policy = load_policy(variant, source) if source is not None else self.known(variant)
        if policy is None:
            raise ValueError(f"unknown variant {variant!r}: send its source")
        self.shadow = policy
        self.changed = time.time()
        self._save()
        return policy

    def clear_shadow(self) -> None:
        self.shadow = None
        self.changed = time.time()
        self._save()

    def promote(self, variant: str) -> None:
        """The shadow goes live; the old live version stays loaded as shadow and previous."""
        if self.shadow is None or self.shadow.variant != variant:
            raise ValueError(f"variant {variant!r} is not in shadow "
                             f"(shadow: {self.shadow and self.shadow.variant})")
        self.previous, self.live, self.shadow = self.live, self.shadow, self.live
        self.changed = time.time()
        self._save()

    def rollback(self, variant: str | None = None) -> tuple[str, str]:
        """Serve `variant` (default: the previous one) again; returns (from, to)."""
        target = self.previous if variant is None else self.known(check_variant(variant))
        if target is None:
            raise ValueError("nothing to roll back to" if variant is None
                             else f"unknown variant {variant!r}")
        old = self.live
        self.live, self.previous, self.shadow = target, old, None
        self.changed = time.time()
        self._save()
        return old.variant, target.variant

    def state(self) -> dict[str, Any]:
        """The slots with their sources (variant 0's source is None: the shipped one), as
        kept in the policy bucket every replica follows."""
        def one(p: Policy | None) -> dict[str, Any] | None:
            if p is None:
                return None
            return {"variant": p.variant, "sha256": p.sha256,
                    "source": None if p.variant == "0" else p.source}
        return {"live": one(self.live), "shadow": one(self.shadow),
                "previous": one(self.previous), "changed": self.changed}

    def apply(self, state: dict[str, Any]) -> bool:
        """Serve the slots of `state` (another replica's `state()`); loads what is new,
        keeps what is loaded already. Raises PolicyViolation / ValueError on a bad state
        (the slots are then unchanged). Returns whether anything changed."""
        loaded = {(p.variant, p.sha256): p for p in (self.live, self.shadow, self.previous)
                  if p is not None}

        def load(s: dict[str, Any] | None) -> Policy | None:
            if not s:
                return None
            variant = check_variant(str(s["variant"]))
            have = loaded.get((variant, str(s.get("sha256"))))
            if have is not None:
                return have
            src = s.get("source")
            return load_policy(variant, default_source() if src is None else str(src))

        live = load(state.get("live"))
        if live is None:
            raise ValueError("policy state without a live slot")
        new = (live, load(state.get("shadow")), load(state.get("previous")))
        if new == (self.live, self.shadow, self.previous):
            return False
        self.live, self.shadow, self.previous = new
        self.changed = float(state.get("changed") or time.time())
        self._save()
        return True

    def facts(self) -> dict[str, Any]:
        return {"live": self.live.variant, "shadow": self.shadow and self.shadow.variant,
                "previous": self.previous and self.previous.variant,
                "live_sha256": self.live.sha256, "params": self.live.params,
                "load_error": self.load_error}


class LiveTracker:
    """Virtual positions of the live and shadow decisions, walked on the ticks that follow."""

    def __init__(self, horizon: int, keep: int = 2000) -> None:
        self.horizon = horizon
        self.tape: deque[MarketTick] = deque(maxlen=max(64, 4 * horizon))
        self.open: list[PolicyOutcome] = []
        self.closed: deque[PolicyOutcome] = deque(maxlen=keep)
        self.trades: dict[int, list[Trade | None]] = {}  # seq → (live, shadow), while open
        # milliseconds since the epoch: outcome numbers keep growing across restarts, so a
        # reader's `since` from before a restart still means "newer than what I saw"
        self.seq = int(time.time() * 1000)
        self.first = self.seq

    def tick(self, tick: MarketTick) -> None:
        self.tape.append(tick)
        for o in list(self.open):
            self._step(o, tick)

    def _step(self, o: PolicyOutcome, tick: MarketTick) -> bool:
        """Walk both sides of `o` one bar; closes it (and says so) once both are closed."""
        if all(t is None or t.step(tick) for t in self.trades[o.seq]):
            self._close(o)
            return True
        return False

    def _close(self, o: PolicyOutcome) -> None:
        lt, st = self.trades.pop(o.seq)
        o.live_return = lt.return_pct if lt else 0.0
        o.shadow_return = st.return_pct if st else 0.0
        o.closed_at = time.time()
        self.open.remove(o)
        self.closed.append(o)

    def record(self, last: MarketTick, live: str, approved: bool, proposal: dict[str, Any] | None,
               size: float | None, shadow: dict[str, Any] | None,
               violation: str | None = None) -> PolicyOutcome:
        """A finished run: open its trades and replay the ticks seen since its batch ended."""
        self.seq += 1
        sh = shadow or {}
        o = PolicyOutcome(seq=self.seq, live=live, shadow=sh.get("variant"),
                    live_approved=approved, violation=violation,
                    shadow_approved=bool(sh.get("approved")),
                    shadow_violation=sh.get("violation"), shadow_error=sh.get("error"))
        self.trades[o.seq] = [self._trade(last, proposal, size) if approved else None,
                    self._trade(last, shadow.get("proposal"), shadow.get("size"))
                    if shadow and shadow.get("approved") else None]
        after = self._since(last)
        self.open.append(o)
        for t in after:
            if self._step(o, t):
                break
        return o

    def _trade(self, last: MarketTick, p: dict[str, Any] | None, size: float | None) -> Trade | None:
        if not p:
            return None
        return open_trade(str(p["side"]), last.close, float(p["new_stop_pct"]),
                          float(p["new_target_pct"]), float(size or 0.0), self.horizon)

    def _since(self, last: MarketTick) -> list[MarketTick]:
        ticks = list(self.tape)
        for i in range(len(ticks) - 1, -1, -1):
            if ticks[i] is last:
                return ticks[i + 1:]
        return []

    def outcomes(self, since: int = 0, limit: int = 500) -> list[PolicyOutcome]:
        return [o for o in self.closed if o.seq > since][:limit]

    def facts(self) -> dict[str, Any]:
        return {"open_outcomes": len(self.open),
                "closed_outcomes": self.seq - self.first - len(self.open),
                "last_outcome": self.closed[-1].seq if self.closed else self.first}
