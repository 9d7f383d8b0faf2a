"""SFT of the LoRA adapter's top layers over cached activations: the CPU recipe.

A fp32 step through all 30 layers of the small model costs ~15 s on 2 cores (4 examples of
~270 tokens), so a few hundred corrections took an hour. With the adapter trained only in
the top `layers` (the lower layers' LoRA stays zero), everything below them is frozen: the
hidden state entering the first trained layer is a fixed function of the example, computed
once, and each step runs only the top layers forward and back. The adapter keeps every
layer's LoRA tensors (the lower ones zero), so export and serving do not change.
"""

from __future__ import annotations

import contextlib
import random
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

Say = Callable[[str], None]
_LAYER = re.compile(r"\.layers\.(\d+)\.")


@contextlib.contextmanager
def _top_only(inner: Any, first: int) -> Iterator[None]:
    """The decoder runs layers[first:] only (fed by `inputs_embeds`)."""
    import torch

    layers, n = inner.layers, inner.config.num_hidden_layers
    inner.layers = torch.nn.ModuleList(list(layers)[first:])
    inner.config.num_hidden_layers = n - first
    try:
        yield
    finally:
        inner.layers, inner.config.num_hidden_layers = layers, n


def supports(model: Any) -> bool:
    """A decoder with `model.layers` that takes `inputs_embeds` (Llama, Phi-3, Qwen …)."""
    inner = getattr(model.get_base_model(), "model", None)
    return inner is not None and hasattr(inner, "layers") and hasattr(inner, "embed_tokens")


DECISION_KEYS = ("action", "side", "new_stop_pct", "new_target_pct")


def decision_spans(completion: str) -> list[tuple[int, int]]:
    """Character spans of the decision fields' values in a proposal's compact JSON."""
    spans = []
    for key in DECISION_KEYS:
        head = f'"{key}":'
        at = completion.find(head)
        if at < 0:
            continue
        start = at + len(head)
        end = completion.find(",", start)
        spans.append((start, end if end > 0 else len(completion)))
    return spans


def token_weights(tok: Any, completion: str, weight: float) -> list[float]:
    """Per completion token: `weight` where it overlaps a decision value, else 1."""
    enc = tok(completion, add_special_tokens=False, return_offsets_mapping=True)
    spans = decision_spans(completion) if weight != 1.0 else []
    return [weight if any(a < e and b > s for s, e in spans) else 1.0
            for a, b in enc["offset_mapping"]]


def train_top_layers(peft: Any, tok: Any, data: Sequence[tuple[str, str]], *, layers: int,
                     steps: int, batch_size: int, learning_rate: float, seed: int,
                     max_length: int, say: Say, decision_weight: float = 1.0) -> float:
    """Train the LoRA weights of the top `layers` decoder layers on (prompt, completion)
    pairs, loss on the completion only, the decision values' tokens weighted by
    `decision_weight` → the mean loss of the last epoch's steps."""
    import torch

    base = peft.get_base_model()
    inner = base.model
    first = max(0, len(inner.layers) - layers)
    trainable = []
    for name, p in peft.named_parameters():
        m = _LAYER.search(name)
        keep = "lora_" in name and m is not None and int(m.group(1)) >= first
        p.requires_grad_(keep)
        if keep:
            trainable.append(p)
    rows: list[tuple[Any, list[int], list[float]]] = []
    peft.eval()
    with torch.no_grad():
        for i, (prompt, completion) in enumerate(data):
            p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
            c_ids = tok(completion, add_special_tokens=False)["input_ids"]
            ids = (p_ids + c_ids)[-max_length:]
            labels = ([-100] * len(p_ids) + c_ids)[-max_length:]
            weights = ([0.0] * len(p_ids) + token_weights(tok, completion, decision_weight))
            out = base(input_ids=torch.tensor([ids]), output_hidden_states=True, use_cache=False)
            rows.append((out.hidden_states[first][0], labels, weights[-max_length:]))
            if (i + 1) % 16 == 0 or i + 1 == len(data):
                say(f"SFT: caching the frozen layers' output {i + 1}/{len(data)}")
    opt = torch.optim.AdamW(trainable, lr=learning_rate, weight_decay=0.0)
    rng = random.Random(seed)
    order: list[int] = []
    losses: list[float] = []
    peft.train()
    with _top_only(inner, first):
        for step in range(steps):
            if len(order) < batch_size:
                fresh = list(range(len(rows)))
                rng.shuffle(fresh)
                order += fresh
            batch = [rows[j] for j in order[:batch_size]]
            del order[:batch_size]
            width = max(len(lab) for _, lab, _ in batch)
            h = torch.zeros(len(batch), width, batch[0][0].shape[-1])
            mask = torch.zeros(len(batch), width, dtype=torch.long)
            labels = torch.full((len(batch), width), -100, dtype=torch.long)
            scale = torch.zeros(len(batch), width)
            for k, (hs, lab, wt) in enumerate(batch):
                h[k, :len(lab)], mask[k, :len(lab)] = hs, 1
                labels[k, :len(lab)] = torch.tensor(lab)
                scale[k, :len(wt)] = torch.tensor(wt)
            logits = base(inputs_embeds=h, attention_mask=mask, use_cache=False).logits
            # position t predicts token t+1, as the model's own loss shifts
            ce = torch.nn.functional.cross_entropy(
                logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1),
                ignore_index=-100, reduction="none")
            w = scale[:, 1:].reshape(-1) * (labels[:, 1:].reshape(-1) != -100)
            loss = (ce * w).sum() / w.sum().clamp(min=1e-6)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            losses.append(float(loss))
            say(f"SFT step {step + 1}/{steps} (top {layers} layers), loss {losses[-1]:.3f}")
    peft.eval()
    tail = losses[-max(1, len(rows) // batch_size):]
    return sum(tail) / len(tail)
