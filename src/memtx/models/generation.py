"""Sampling with memory: the prompt goes through the segment loop, then one token per step.

With the XL cache each new token costs one K/V projection per layer (``TransformerLM.decode``). Memory tokens and
associative memory only change at segment ends, so a new token re-reads the current partial segment with the state
of the completed ones; when the segment fills up, its state becomes the new one. Under the causal mask the
segment's logits do not depend on the write positions, so both ways equal the segmented forward exactly.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence

import torch
from torch import Tensor

from memtx.memory.state import MemoryState
from memtx.models.segments import segments
from memtx.models.transformer_lm import TransformerLM


def _sample(logits: Tensor, temperature: float, top_k: int | None, generator: torch.Generator | None) -> Tensor:
    if temperature <= 0:
        return logits.argmax(-1, keepdim=True)
    scaled = logits / temperature
    if top_k is not None:
        kth = torch.topk(scaled, min(top_k, scaled.shape[-1]), dim=-1).values[:, -1:]
        scaled = scaled.masked_fill(scaled < kth, float("-inf"))
    probs = torch.softmax(scaled, -1)
    if generator is not None and generator.device != probs.device:  # e.g. a CPU generator for a model on a GPU
        return torch.multinomial(probs.to(generator.device), 1, generator=generator).to(probs.device)
    return torch.multinomial(probs, 1, generator=generator)


@torch.no_grad()
def prefill(
    model: TransformerLM,
    rows: Sequence[Iterable[Sequence[int]]],
    segment_len: int,
    state: MemoryState | None = None,
) -> tuple[MemoryState | None, Tensor]:
    """Read B prompts of equal length, each of any length given as chunks of token ids, through the segment loop
    holding one segment per row at a time: returns the state after all complete segments but the last, and the
    remaining 1..T ids (B, n) to pass to ``generate`` with that state (together they equal ``generate`` on the
    whole prompts)."""
    was_training = model.training
    model.eval()
    streams = [itertools.chain.from_iterable(r) for r in rows]
    pending: list[list[int]] = [[] for _ in streams]
    while True:
        for p, stream in zip(pending, streams, strict=True):
            p.extend(itertools.islice(stream, segment_len + 1 - len(p)))
        if any(len(p) <= segment_len for p in pending):
            break
        state = model(torch.tensor([p[:segment_len] for p in pending]).to(model.device), state, scores="none").state
        for p in pending:
            del p[:segment_len]
    model.train(was_training)
    if len({len(p) for p in pending}) != 1:
        raise ValueError("the prompts of a batch must have equal lengths")
    if not pending or not pending[0]:
        raise ValueError("the prompt is empty")
    return state, torch.tensor(pending).to(model.device)


@torch.no_grad()
def generate(
    model: TransformerLM,
    prompt: Tensor,
    length: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    segment_len: int = 256,
    state: MemoryState | None = None,
    generator: torch.Generator | None = None,
    compile: bool = False,
) -> Tensor:
    """Continue `prompt` (B, P>=1) by `length` tokens; temperature 0 is greedy. Returns (B, length).

    compile: run the per-token step of the XL cache through ``torch.compile`` (about a minute of compilation the
    first time in a process; measured about 2x faster at batch 1 on 2 CPU cores)."""
    was_training = model.training
    model.eval()
    prompt = prompt.to(model.device)
    incremental = model.decodes_incrementally
    # cpp_wrapper: the compiled step calls its kernels from C++, not Python (255 vs 235 tokens/s at batch 1, 2 cores)
    decode = (
        torch.compile(model.decode, dynamic=True, options={"cpp_wrapper": True})
        if compile and incremental
        else model.decode
    )
    # complete segments update the state; a trailing partial one (memory tokens / associative) is re-read per token
    n_full = prompt.shape[1] if incremental else (prompt.shape[1] - 1) // segment_len * segment_len
    for _, out in segments(model, prompt[:, :n_full], state, segment_len):
        state = out.state
    current = prompt[:, n_full:]
    if incremental:
        kv = model.kv_cache(state, prompt.shape[0])
        logits = out.logits[:, -1]
    else:
        out = model(current, state)
        logits = out.logits[:, -1]
        if current.shape[1] == segment_len:
            state, current = out.state, current[:, :0]
    tokens = []
    for _ in range(length):
        nxt = _sample(logits, temperature, top_k, generator)
        tokens.append(nxt)
        if incremental:
            logits, kv = decode(nxt, kv)
            continue
        current = torch.cat([current, nxt], dim=1)
        out = model(current, state)
        logits = out.logits[:, -1]
        if current.shape[1] == segment_len:
            state, current = out.state, current[:, :0]
    model.train(was_training)
    return torch.cat(tokens, dim=1)
