"""The tiny tokenizer: a byte-level BPE trained in-process, wrapped for Hugging Face.

Byte-level (Llama-3 / GPT-2 style) pre-tokenisation splits words, digits and punctuation the
same way in `tokenizers` and in ONNX Runtime GenAI's tokenizer, so both give identical ids.
"""

from __future__ import annotations

from pathlib import Path

from .corpus import sentences

VOCAB_SIZE = 1024
BOS, EOS, PAD, UNK = "<|begin_of_text|>", "<|endoftext|>", "<|pad|>", "<|unk|>"
# Phi-3 chat tokens and ChatML (Hermes-3) chat tokens
PHI3_TOKENS = ["<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]
CHATML_TOKENS = ["<|im_start|>", "<|im_end|>"]
SPECIALS = [BOS, EOS, PAD, UNK, *PHI3_TOKENS, *CHATML_TOKENS]

PHI3_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}<|end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def train_tokenizer() -> object:
    """Train the byte-level BPE (deterministic for a fixed corpus) → `tokenizers.Tokenizer`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(sentences(3000, seed=1), trainer=trainer)
    return tok


def save_tokenizer(tok: object, out: Path, *, chat_template: str, eos: str) -> None:
    """Save as a `PreTrainedTokenizerFast` folder with a chat template."""
    from transformers import PreTrainedTokenizerFast

    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=eos,
        pad_token=PAD,
        unk_token=UNK,
        additional_special_tokens=[t for t in SPECIALS if t not in (BOS, eos, PAD, UNK)],
        clean_up_tokenization_spaces=False,
        model_max_length=4096,
    )
    fast.chat_template = chat_template
    fast.save_pretrained(out)
