"""The error an engine raises when it cannot load here, apart from the engines' chooser so
the engines need not import it."""

from __future__ import annotations

__all__ = ["EngineUnavailable"]


class EngineUnavailable(Exception):
    """An engine cannot load here (package, library or checkpoint missing); says what to do."""
