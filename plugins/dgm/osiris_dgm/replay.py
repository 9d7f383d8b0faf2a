"""Re-score an archived variant offline, from the archive and the phi3 reply cache alone
(no NATS, no model): `python -m osiris_dgm.replay DATA_DIR VARIANT [--cheap]`.

Prints the reward (repr: every bit), the sub-window rewards, trades and violations as JSON.
Two runs in two processes print the same thing — the reward is reproducible — and an auditor
can check any archived score without the live system.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

import msgspec
from osiris_orchestrator.config import OrchestratorConfig

from .config import DgmConfig
from .contracts import Variant
from .kernel import Kernel, Rejected


async def _noemit(kind: str, v: Variant, message: str) -> None:
    return None


def replay(data_dir: Path, variant: str, full: bool = True, market_csv: str = "",
           config: DgmConfig | None = None) -> dict[str, object]:
    state = json.loads((data_dir / "dgm" / "state.json").read_text())
    orch = msgspec.convert(state.get("orchestrator") or {}, OrchestratorConfig)
    pins = json.loads((data_dir / "dgm" / "pins.json").read_text())
    csv = Path(market_csv or pins["market_csv"])
    cfg = config or msgspec.convert(state.get("dgm") or {}, DgmConfig)
    kernel = Kernel(cfg, orch, data_dir, None, _noemit, csv)
    source = kernel.archive.source(variant)
    scored = asyncio.run(kernel.score(variant, source, full))
    return {"variant": variant, "reward": repr(scored.reward),
            "sub_rewards": [repr(x) for x in scored.sub_rewards], "trades": scored.trades,
            "violations": scored.violations, "data_sha256": kernel.data_hash}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m osiris_dgm.replay", description=__doc__)
    ap.add_argument("data_dir", type=Path)
    ap.add_argument("variant")
    ap.add_argument("--cheap", action="store_true", help="the cheap window only")
    args = ap.parse_args(argv)
    try:
        out = replay(args.data_dir, args.variant, full=not args.cheap)
    except (Rejected, RuntimeError, OSError, KeyError) as e:
        print(f"replay: {e}", file=sys.stderr)
        return 1
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
