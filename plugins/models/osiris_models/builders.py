"""Building the tiny and small models, each a no-op when up to date; the heavy builders
import lazily so the CLI and the plugin registry stay fast."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["build_small", "build_tiny", "default_tiny_dir"]


def build_tiny(root: Any, progress: Any = None, force: bool = False) -> Path:
    """Build the tiny models under `root` (see `osiris_models.tiny`); a no-op when up to date."""
    from .tiny import build_tiny as _build

    return _build(root, progress, force)


def build_small(root: Any, progress: Any = None, force: bool = False) -> Path:
    """Build the small real model under `root` (see `osiris_models.small`); a no-op when up
    to date."""
    from .small import build_small as _build

    return _build(root, progress, force)


def default_tiny_dir(data_dir: Any) -> Path:
    """Where `osiris demo` keeps its models: `<data_dir>/models`."""
    return Path(data_dir) / "models"
