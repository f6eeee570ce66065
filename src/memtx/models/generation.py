"""Sampling with the cache: the prompt is read in segments, then one token per step."""

from __future__ import annotations

import torch
from torch import Tensor

from memtx.memory.xl_cache import XLCacheState
from memtx.models.transformer_lm import TransformerLM


@torch.no_grad()
def generate(
    model: TransformerLM,
    prompt: Tensor,
    length: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    segment_len: int = 256,
    state: XLCacheState | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Continue `prompt` (B, P>=1) by `length` tokens; temperature 0 is greedy. Returns (B, length).

    The prompt is read in segments with the hidden-state cache; its cache is then projected once into keys and
    values, and each new token costs one K/V projection per layer (``TransformerLM.decode``)."""
    was_training = model.training
    model.eval()
    for start in range(0, prompt.shape[1], segment_len):
        out = model(prompt[:, start : start + segment_len], state)
        state = out.state
    logits = out.logits[:, -1]
    kv = model.kv_cache(state, prompt.shape[0])
    tokens = []
    for _ in range(length):
        if temperature <= 0:
            nxt = logits.argmax(-1, keepdim=True)
        else:
            scaled = logits / temperature
            if top_k is not None:
                kth = torch.topk(scaled, min(top_k, scaled.shape[-1]), dim=-1).values[:, -1:]
                scaled = scaled.masked_fill(scaled < kth, float("-inf"))
            nxt = torch.multinomial(torch.softmax(scaled, -1), 1, generator=generator)
        tokens.append(nxt)
        logits, kv = model.decode(nxt, kv)
    model.train(was_training)
    return torch.cat(tokens, dim=1)
