"""Child processes that end with the process that started them (Linux), for servers and
test harnesses that start `nats-server` or `osiris run` as children."""

from __future__ import annotations

import signal

__all__ = ["die_with_parent"]

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Run in the child between fork and exec (`Popen(..., preexec_fn=die_with_parent)`):
    the kernel sends the child SIGTERM when its parent dies, even by `kill -9`.

    SIGTERM, not SIGKILL: every child we start stops on SIGTERM by itself, and in bounded
    time — `nats-server` shuts down cleanly (its JetStream store written out, so the next
    start does not recover it), `osiris run` drains within `shutdown_timeout_s` and leaves
    with `exit_now` — while SIGKILL would skip that for nothing. A no-op where prctl is
    missing (not Linux): the child then outlives its parent, as it would without this."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass

