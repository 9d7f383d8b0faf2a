"""The chat prompt phi3 sends, shared by the actor (serving) and the trainer (training), so an
adapter is trained on exactly the text it will see."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

__all__ = ["ChatFormat", "chat_prompt", "detect_format", "user_prompt"]

FEW_SHOT_HEADER = "Corrected proposals from earlier feedback (follow their style):"

ChatFormat = Literal["phi3", "chatml"]


def user_prompt(prompt: str, examples: Sequence[str]) -> str:
    """The user turn: corrected proposals (JSON, newest first) as few-shot examples, then
    the prompt (seed 004's prompt augmentation)."""
    if not examples:
        return prompt
    return "\n".join([FEW_SHOT_HEADER, *examples, "", prompt])


def chat_prompt(system: str, user: str, fmt: ChatFormat = "phi3") -> str:
    """The chat markup of the model's family, up to the assistant's turn: Phi-3's
    `<|system|>…<|end|>`, or ChatML's `<|im_start|>…<|im_end|>` (SmolLM2, Hermes, Qwen)."""
    if fmt == "chatml":
        return (f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n"
                "<|im_start|>assistant\n")
    return f"<|system|>\n{system}<|end|>\n<|user|>\n{user}<|end|>\n<|assistant|>\n"


def detect_format(folder: Path | str) -> ChatFormat:
    """The chat format of a model folder (Hugging Face or GenAI), read from its chat
    template (`chat_template.jinja`, or `chat_template` in `tokenizer_config.json`; not the
    rest of that file, whose special-token list may name ChatML's tokens either way);
    Phi-3's when the folder has none."""
    import json

    root = Path(folder)
    try:
        template = (root / "chat_template.jinja").read_text()
    except OSError:
        try:
            template = json.loads((root / "tokenizer_config.json").read_text()).get("chat_template")
        except (OSError, ValueError, AttributeError):
            template = None
    return "chatml" if isinstance(template, str) and "<|im_start|>" in template else "phi3"
