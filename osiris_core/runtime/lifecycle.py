"""An actor's lifecycle as one explicit table: (phase, trigger) → phase.

`Phase` is finer than the public `State` that status replies carry: a first boot and a
restart are both "starting", a drain after running and a close after a pause both
"stopping". The difference decides what a request may do, so it lives here instead of in
side flags:

| phase       | state    | requests                     | events            |
| ----------- | -------- | ---------------------------- | ----------------- |
| BOOTING     | starting | wait (bounded)               | wait              |
| RESTARTING  | starting | wait (bounded)               | wait              |
| RUNNING     | running  | served                       | handled           |
| PAUSED      | paused   | wait (bounded), "wanted"     | wait              |
| DRAINING    | stopping | delivered ones still served  | in-flight finish  |
| CLOSING     | stopping | refused (nothing is loaded)  | dropped           |
| STOPPED     | stopped  | refused                      | dropped           |
| FAILED      | failed   | refused                      | dropped           |
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum

__all__ = ["TABLE", "TRANSITIONS", "Lifecycle", "Phase", "State", "Trigger", "IllegalTransition"]


class State(str, Enum):
    """Public lifecycle states (status replies, /health); `TRANSITIONS` lists the moves."""

    STARTING = "starting"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"


class Phase(str, Enum):
    BOOTING = "booting"
    RESTARTING = "restarting"
    RUNNING = "running"
    PAUSED = "paused"
    DRAINING = "draining"
    CLOSING = "closing"
    STOPPED = "stopped"
    FAILED = "failed"

    @property
    def state(self) -> State:
        return _STATE[self]


_STATE: Mapping[Phase, State] = {
    Phase.BOOTING: State.STARTING, Phase.RESTARTING: State.STARTING,
    Phase.RUNNING: State.RUNNING, Phase.PAUSED: State.PAUSED,
    Phase.DRAINING: State.STOPPING, Phase.CLOSING: State.STOPPING,
    Phase.STOPPED: State.STOPPED, Phase.FAILED: State.FAILED,
}


class Trigger(str, Enum):
    BOOT = "boot"            # start() of a stopped actor
    STARTED = "started"      # on_start returned
    CRASH = "crash"          # on_start, a background task, a fatal error or a health check failed
    GIVE_UP = "give_up"      # restart intensity exceeded
    PAUSE = "pause"
    UNPAUSE = "unpause"      # a pause that could not complete, or resume
    RESTART = "restart"      # an operator asked for a restart
    STOP = "stop"
    CUT = "cut"              # the drain ran out of time: what is still buffered is refused
    STOPPED = "stopped"


B, R, RU, P, D, C, S, F = (Phase.BOOTING, Phase.RESTARTING, Phase.RUNNING, Phase.PAUSED,
                           Phase.DRAINING, Phase.CLOSING, Phase.STOPPED, Phase.FAILED)
T = Trigger

TABLE: Mapping[tuple[Phase, Trigger], Phase] = {
    (S, T.BOOT): B,
    (B, T.STARTED): RU, (B, T.CRASH): B, (B, T.GIVE_UP): F, (B, T.STOP): C,
    (R, T.STARTED): RU, (R, T.CRASH): R, (R, T.GIVE_UP): F, (R, T.STOP): C, (R, T.RESTART): R,
    (RU, T.CRASH): R, (RU, T.GIVE_UP): F, (RU, T.PAUSE): P, (RU, T.RESTART): R,
    (RU, T.STOP): D,
    (P, T.UNPAUSE): RU, (P, T.CRASH): R, (P, T.GIVE_UP): F, (P, T.RESTART): R, (P, T.STOP): C,
    (D, T.STOPPED): S, (D, T.CRASH): D, (D, T.CUT): C,
    (C, T.STOPPED): S, (C, T.CRASH): C, (C, T.CUT): C,
    (F, T.RESTART): R, (F, T.STOP): C, (F, T.CRASH): F,
}
"""Every legal move; anything else raises `IllegalTransition`."""

TRANSITIONS: Mapping[State, frozenset[State]] = {
    state: frozenset(to.state for (frm, _), to in TABLE.items()
                     if frm.state is state and to.state is not state)
    for state in State
}
"""The public view of `TABLE`: which states each state can move to."""


class IllegalTransition(RuntimeError):
    pass


class Lifecycle:
    """The current phase; `fire(trigger)` moves it by the table."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.phase = Phase.STOPPED
        self.serves = False
        """Requests and events run now (running, or draining what was delivered): a plain
        attribute, kept by `fire`, since every request reads it."""

    @property
    def state(self) -> State:
        return self.phase.state

    def can(self, trigger: Trigger) -> bool:
        return (self.phase, trigger) in TABLE

    def fire(self, trigger: Trigger) -> tuple[Phase, Phase]:
        """Apply `trigger`; returns (before, after)."""
        before = self.phase
        after = TABLE.get((before, trigger))
        if after is None:
            raise IllegalTransition(f"{self.name}: {trigger.value} is not allowed while "
                                    f"{before.value}")
        self.phase = after
        self.serves = after in (Phase.RUNNING, Phase.DRAINING)
        return before, after

    @property
    def waits(self) -> bool:
        """Requests wait (bounded) for the phase to end."""
        return self.phase in (Phase.BOOTING, Phase.RESTARTING, Phase.PAUSED)

    @property
    def consuming(self) -> bool:
        """Durable consumers keep fetching (they pause while the gate is closed)."""
        return self.phase in (Phase.BOOTING, Phase.RESTARTING, Phase.RUNNING, Phase.PAUSED)
