"""Phi-3's chat prompt, shared by the actor (serving) and the trainer (training), so an
adapter is trained on exactly the text it will see."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["chat_prompt", "user_prompt"]

FEW_SHOT_HEADER = "Corrected proposals from earlier feedback (follow their style):"


def user_prompt(prompt: str, examples: Sequence[str]) -> str:
    """The user turn: corrected proposals (JSON, newest first) as few-shot examples, then
    the prompt (seed 004's prompt augmentation)."""
    if not examples:
        return prompt
    return "\n".join([FEW_SHOT_HEADER, *examples, "", prompt])


def chat_prompt(system: str, user: str) -> str:
    """Phi-3 chat markup up to the assistant's turn."""
    return f"<|system|>\n{system}<|end|>\n<|user|>\n{user}<|end|>\n<|assistant|>\n"
