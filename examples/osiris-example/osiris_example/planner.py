"""A self-improvement planner from a third-party package: it asks for a little more
confidence than the policy's `min_confidence` (the dgm kernel then verifies the change)."""

from __future__ import annotations

import difflib
import re
from typing import Any

STEP = 0.05


async def tighten(request: Any, context: Any) -> dict[str, str]:
    """Raise PARAMS["min_confidence"] by 0.05 (at most 0.95); no change when absent."""
    src: str = request.policy_source
    m = re.search(r'("min_confidence":\s*)([0-9.]+)', src)
    if m is None:
        return {"diff": "", "note": "no min_confidence to tighten"}
    value = min(0.95, float(m.group(2)) + STEP)
    new = src[:m.start(2)] + repr(round(value, 3)) + src[m.end(2):]
    diff = "".join(difflib.unified_diff(src.splitlines(keepends=True),
                                        new.splitlines(keepends=True),
                                        fromfile=f"a/{request.path}", tofile=f"b/{request.path}"))
    return {"diff": diff, "note": f"min_confidence {m.group(2)} → {value:g}"}
