"""`python -m osiris_trainer.job SPEC RESULT`: one training run in a process of its own.

The actor stays responsive while torch trains, a crash or an out-of-memory kills only this
process, and every byte of (GPU) memory is returned when it exits. Progress lines go to
stderr prefixed with `PROGRESS`; the outcome is written to RESULT as JSON.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import msgspec

from .config import TrainerConfig
from .dataset import Example

PROGRESS = "osiris-train: "


class JobSpec(msgspec.Struct, kw_only=True):
    config: TrainerConfig
    base_model: str
    version: str
    out_dir: str
    train: list[Example]
    held: list[Example]


def main(argv: list[str]) -> int:
    spec = msgspec.json.decode(Path(argv[1]).read_bytes(), type=JobSpec)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("GPTQMODEL_CPU_WORKERS", str(min(2, os.cpu_count() or 1)))
    warnings.simplefilter("ignore")  # third-party deprecations; our outcome says what matters

    def say(msg: str) -> None:
        print(PROGRESS + msg, file=sys.stderr, flush=True)

    from .train import run

    outcome = run(spec.config, Path(spec.base_model), spec.train, spec.held, Path(spec.out_dir),
                  spec.version, say)
    Path(argv[2]).write_bytes(msgspec.json.encode(outcome))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
