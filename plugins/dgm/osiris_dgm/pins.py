"""`python -m osiris_dgm.pins [--write]`: check (or, after a deliberate change to the reward
code, re-record) the sha256 pins of the files the dgm reward depends on."""

from __future__ import annotations

import json
import sys
from importlib import resources

from .reward import check_pins, pin_digest


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if "--write" in args:
        path = resources.files("osiris_dgm").joinpath("PINNED.json")
        with resources.as_file(path) as p:
            p.write_text(json.dumps(pin_digest(), indent=1) + "\n")
        print(f"pinned {len(pin_digest())} files in {path}")
        return 0
    try:
        check_pins()
    except RuntimeError as e:
        print(e, file=sys.stderr)
        return 1
    print("reward code matches its pins")
    return 0


if __name__ == "__main__":
    sys.exit(main())
