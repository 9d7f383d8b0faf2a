"""Stage 1: the lint and type score of a policy source (ruff issue count and pylint's 0–10
score, as the seeds' kernel used), each run in the sandbox on the source given on stdin."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

from .sandbox import Limits, run_sandboxed

__all__ = ["lint_scores"]

RUFF_SELECT = "E,F,W,B,UP"
PYLINT_DISABLE = "missing-module-docstring,too-many-locals,too-many-branches,line-too-long"


def _ruff() -> str | None:
    near = Path(sys.executable).with_name("ruff")
    return str(near) if near.exists() else shutil.which("ruff")


async def lint_scores(source: str, limits: Limits) -> dict[str, float]:
    """{"ruff_issues": n, "pylint": score}; raises RuntimeError when a linter cannot run."""
    ruff = _ruff()
    if ruff is None:
        raise RuntimeError("ruff is not installed (pip install ruff)")
    r = await run_sandboxed([ruff, "check", "--select", RUFF_SELECT,
                             "--config", "builtins = [\"record\"]", "--line-length", "115",
                             "--output-format", "json", "--stdin-filename", "policy.py", "-"],
                            source.encode(), limits, python=False)
    if r.killed or r.returncode not in (0, 1):
        raise RuntimeError(f"ruff failed ({r.killed or r.returncode}): {r.stderr[-300:]}")
    issues = len(json.loads(r.stdout or b"[]"))
    p = await run_sandboxed(["-m", "pylint", "--from-stdin", "policy.py", "--score=y",
                             "--persistent=n", "--additional-builtins=record",
                             f"--disable={PYLINT_DISABLE}", "--jobs=1"],
                            source.encode(), limits)
    m = re.search(rb"rated at (-?[0-9.]+)/10", p.stdout)
    if p.killed or m is None:
        raise RuntimeError(f"pylint failed ({p.killed or p.returncode}): "
                           f"{(p.stdout.decode(errors='replace') + p.stderr)[-300:]}")
    return {"ruff_issues": float(issues), "pylint": float(m.group(1))}
