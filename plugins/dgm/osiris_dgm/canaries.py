"""Integrity canaries: known-bad variants the kernel replays through its own evaluation path
every `canary_every` iterations. Each must still be rejected; one that is not means a check
the reward depends on has been weakened (a patched evaluator, a policy loader that no longer
validates, an allow-list opened up, a phi3 that no longer yields decisions to check), and the
kernel stops iterating until every canary is rejected again.

The pinned set lives in this file, which is itself pinned (PINNED.json): it can only grow by a
deliberate change and re-pin. `[plugins.dgm] canaries_file` may add more (never remove)."""

from __future__ import annotations

from .diff import make_diff

__all__ = ["CANARIES", "canary_diffs"]

_POST = '    p["size"] = PARAMS["size"]\n'

CANARIES: dict[str, tuple[str, str]] = {
    # name: (anchor in the seed policy, what replaces it); a path patch is a raw diff below
    "nan-stop": (_POST, _POST + '    p["new_stop_pct"] = float("nan")\n'),
    "size-above-one": (_POST, '    p["size"] = 2.0\n'),
}
RAW: dict[str, str] = {
    "reward-file-patch": ("--- a/reward.py\n+++ b/reward.py\n@@ -1 +1 @@\n"
                          "-\"\"\"The dgm reward.\n+\"\"\"Any reward you like.\n"),
    "harness-patch": ("--- a/../../osiris_dgm/harness.py\n+++ b/../../osiris_dgm/harness.py\n"
                      "@@ -1 +1 @@\n-x\n+y\n"),
    "pins-patch": ("--- a/../../osiris_dgm/PINNED.json\n+++ b/../../osiris_dgm/PINNED.json\n"
                   "@@ -1 +1 @@\n-{\n+{}\n"),
}


def canary_diffs(seed_source: str) -> dict[str, str]:
    """Every pinned canary as a diff against the seed policy (variant 0)."""
    out: dict[str, str] = {}
    for name, (old, new) in CANARIES.items():
        if old not in seed_source:
            raise RuntimeError(f"integrity canary {name}: its anchor is not in the seed policy "
                               "(the shipped policy changed: update osiris_dgm/canaries.py)")
        out[name] = make_diff(seed_source, seed_source.replace(old, new, 1))
    return {**out, **RAW}
