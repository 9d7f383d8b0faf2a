"""Real headless Chromium for the gateway's page tests (selenium + Debian's chromium and
chromium-driver, which .ci/run installs): skipped on a machine without them, an error in CI (`CI` set)."""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest

__all__ = ["headless_chromium"]

BASE_ARGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--disable-dev-shm-usage")


@contextlib.contextmanager
def headless_chromium(*args: str) -> Iterator[Any]:
    """A selenium Chrome driver on a fresh profile, with `args` after the base flags; quit
    and the profile removed afterwards."""
    if os.environ.get("CI"):
        webdriver = importlib.import_module("selenium.webdriver")
    else:
        webdriver = pytest.importorskip("selenium.webdriver",
                                        reason="pip install -e 'gateway[test]'")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_bin = shutil.which("chromedriver")
    if not (chromium and driver_bin):
        assert not os.environ.get("CI"), "CI must install chromium and chromium-driver"
        pytest.skip("needs Debian's chromium and chromium-driver (.ci/run installs them)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    profile = tempfile.mkdtemp(prefix="osiris-chromium-")
    for arg in (*BASE_ARGS, *args, f"--user-data-dir={profile}"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(options=opts, service=webdriver.ChromeService(driver_bin))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
