"""A plugin whose register_actors raises: reported by name, skipped."""

from __future__ import annotations

from typing import Any

from osiris_core import hookimpl


@hookimpl
def register_actors(register: Any) -> None:
    raise RuntimeError("broken_register plugin: register_actors fails on purpose")
