"""Hosting actors in one process: the node (`Runtime`), each actor's cell and its supervisor,
request dispatch, event consumers, control ops, lifecycle states and slots."""

from __future__ import annotations

from typing import Any

__all__ = ["Runtime"]


def __getattr__(name: str) -> Any:
    # lazily, so importing a runtime module does not import the whole node first
    if name == "Runtime":
        from osiris_core.runtime.node import Runtime
        return Runtime
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
