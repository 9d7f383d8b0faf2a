"""Phi-3's chat prompt, shared by the actor (serving) and the trainer (training), so an
adapter is trained on exactly the text it will see."""

from __future__ import annotations

__all__ = ["chat_prompt"]


def chat_prompt(system: str, user: str) -> str:
    """Phi-3 chat markup up to the assistant's turn."""
    return f"<|system|>\n{system}<|end|>\n<|user|>\n{user}<|end|>\n<|assistant|>\n"
