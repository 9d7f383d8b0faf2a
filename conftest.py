"""Shared setup for every test directory (tests/, plugins/*/tests, gateway/tests).

The test plugins (and the example plugin, when the environment lacks it) are pip-installed
like any third-party package, into a private target folder put on sys.path and PYTHONPATH
for this test session only, so they never leak into a user's `osiris demo` or
`osiris plugins`."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

ROOT = Path(__file__).resolve().parent
SITE = ROOT / "build" / "test-plugins-site"
PACKAGES = {
    "osiris-testplugins": ROOT / "tests" / "testplugins",
    "osiris-example": ROOT / "examples" / "osiris-example",
}


def _newest_source(path: Path) -> float:
    return max(p.stat().st_mtime for p in path.rglob("*") if p.is_file()
               and "egg-info" not in str(p) and "__pycache__" not in str(p))


def _installed_elsewhere(name: str) -> bool:
    try:
        dist = distribution(name)
    except PackageNotFoundError:
        return False
    return SITE not in Path(str(dist.locate_file(""))).parents and \
        Path(str(dist.locate_file(""))) != SITE


def _install_test_plugins() -> None:
    SITE.mkdir(parents=True, exist_ok=True)
    for name, path in PACKAGES.items():
        if _installed_elsewhere(name):
            continue
        stamp = SITE / f".{name}.stamp"
        if stamp.exists() and stamp.stat().st_mtime >= _newest_source(path):
            continue
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
             "--upgrade", "--target", str(SITE), str(path)],
            check=True,
        )
        stamp.touch()
    sys.path.insert(0, str(SITE))
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(SITE), *filter(None, [os.environ.get("PYTHONPATH")])])
    importlib.invalidate_caches()


# Nothing may download weights at test time; gptqmodel needs its worker count on 2 cores.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GPTQMODEL_CPU_WORKERS", str(min(2, os.cpu_count() or 1)))
_install_test_plugins()
