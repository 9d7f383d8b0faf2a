"""The dgm kernel's open holes (issue 23, item 5), on a real nats-server, real LanceDB and the
real phi3 / orchestrator / feedback actors on the tiny models: integrity canaries, a kernel
restart in the middle of a shadow phase."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from osiris_dgm.config import DgmConfig
from osiris_dgm.contracts import Variant
from osiris_dgm.diff import make_diff
from osiris_dgm.kernel import CanaryFailed, Kernel
from osiris_orchestrator.config import OrchestratorConfig
from osiris_orchestrator.policy import default_source
from osiris_sim.csvdata import make_data

from osiris_core import Config
from osiris_core.protocol import ControlReply
from osiris_core.subjects import control

PERMISSIVE = {"min_stop_pct": 0.0, "max_stop_pct": 1e9, "max_target_pct": 1e9,
              "min_confidence": 0.0, "min_reward_risk": 0.0, "allowed_sides": []}
SRC = default_source()


def models(tiny: Path) -> dict[str, dict[str, Any]]:
    return {"phi3": {"model": str(tiny / "phi3-onnx"), "provider": "cpu"}}


async def no_events(kind: str, v: Variant, message: str) -> None:
    return None


async def test_integrity_canaries_are_rejected_and_one_that_passes_stops_the_loop(
        tiny_models: Path, osiris_config: Callable[..., Config], osiris_runtime: Any,
        fresh_nats_url: str, tmp_path: Path) -> None:
    csv = make_data(tmp_path / "market.csv", bars=400, seed=3)
    dgm = {"market_csv": str(csv), "lint": False, "shadow_decisions": 0,
           "monitor_max_pairs": 0, "canary_every": 2}
    cfg = osiris_config(
        plugins=["phi3", "orchestrator", "feedback", "dgm"], nats=fresh_nats_url,
        tables={**models(tiny_models), "orchestrator": {"risk": PERMISSIVE}, "dgm": dgm})
    async with osiris_runtime(cfg) as rt:
        # a normal run: every pinned canary is rejected, by the check meant to catch it
        res = await rt.bus.request("osiris.dgm.run", {"iterations": 3, "planner": "nop"},
                                   timeout=300)
        assert [v["decision"] for v in res["iterations"]] == ["noop"] * 3
        status: ControlReply = await rt.bus.request(control("dgm"), {"op": "status"},
                                                    reply_type=ControlReply, timeout=10)
        facts = status.status.facts
        print(json.dumps(facts["canaries"], indent=1))
        assert facts["canary_failed"] == ""
        got = facts["canaries"]
        assert set(got) == {"nan-stop", "size-above-one", "reward-file-patch", "harness-patch",
                            "pins-patch"}
        assert "new_stop_pct is not finite" in got["nan-stop"]
        assert "size 2 outside [0, 1]" in got["size-above-one"]
        assert "outside the allow-list" in got["reward-file-patch"]
        assert "escapes the policy folder" in got["harness-patch"]
        assert "escapes the policy folder" in got["pins-patch"]

        # a weakened check: a test-only canary the evaluation (rightly) accepts stands for a
        # check that no longer rejects what it must; the loop stops with the reason
        weak = tmp_path / "canaries.json"
        weak.write_text(json.dumps({"harmless": make_diff(SRC, SRC.replace(
            '"min_confidence": 0.0', '"min_confidence": 0.3'))}))
        data = tmp_path / "weak"
        kcfg = msgspec.convert({**dgm, "canaries_file": str(weak)}, DgmConfig)
        kernel = Kernel(kcfg, OrchestratorConfig(), data, rt.bus, no_events, csv)
        with pytest.raises(CanaryFailed, match="integrity canary extra:harmless was not rejected"):
            await kernel.iterate("nop")
        assert kernel.iteration == 0 and set(kernel.archive.variants) == {"0"}  # no step taken
        assert kernel.canaries["nan-stop"]  # the pinned ones still rejected
        # it stays stopped, across a restart too, until every canary is rejected again
        again = Kernel(kcfg, OrchestratorConfig(), data, rt.bus, no_events, csv)
        assert "extra:harmless" in again.facts()["canary_failed"]
        with pytest.raises(CanaryFailed):
            await again.iterate("nop")
        fixed = Kernel(msgspec.convert(dgm, DgmConfig), OrchestratorConfig(), data, rt.bus,
                       no_events, csv)
        v = await fixed.iterate("nop")
        assert v.decision == "noop" and fixed.canary_failed == ""

