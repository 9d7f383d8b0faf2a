"""The dgm plugin's own hook, offered to other plugins through `register_hookspecs`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from osiris_core.hookspecs import hookspec

__all__ = ["register_planners"]


@hookspec
def register_planners(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Add self-improvement planners to the dgm kernel.

    Called when the dgm planner service starts. Call `register(name, planner)` with an async
    function `planner(request, context)` returning an `osiris_dgm.contracts.PlanReply` or a
    dict `{"diff": ..., "note": ...}`: `request` carries the current policy source
    (`policy_source`), a traces summary, the planner name, a seed and the file name the diff
    must use (`path`); `context.bus` reaches the models. Return a unified diff against the
    policy (empty for no change); the kernel rejects anything malformed or outside the
    allow-list. Returns nothing.
    """
