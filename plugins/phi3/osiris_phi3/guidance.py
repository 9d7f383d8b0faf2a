"""Guidance handed to llguidance inside ONNX Runtime GenAI, and a grammar that does not
compile turned into the caller's 400 (GenAI raises a bare RuntimeError for it)."""

from __future__ import annotations

from dataclasses import dataclass

from osiris_core.errors import BadRequest

from .contracts import GuidanceKind

COMPILE_ERROR = "Error creating grammar:"
"""How GenAI 0.18 prefixes llguidance's compiler message. It compiles when the generator is
created (`og.Generator`), not at `set_guidance`: a Lark, regex or JSON-schema error surfaces
there, before any token is generated."""


@dataclass(frozen=True)
class Guidance:
    """What constrains a generation: a kind GenAI accepts and its text."""

    kind: GuidanceKind
    text: str
    field: str = "grammar"
    """The request field it came from, named in the error when it does not compile."""

    def refusal(self, error: Exception) -> BadRequest | None:
        """The caller's error when `error` is llguidance refusing this text, else None (any
        other failure is ours: it stays a 500)."""
        message = str(error).strip()
        if not message.startswith(COMPILE_ERROR):
            return None
        reason = message[len(COMPILE_ERROR):].strip()
        return BadRequest(f"{self.field}: the {self.kind} does not compile: {reason}",
                          field=self.field, kind=self.kind)
