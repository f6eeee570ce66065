"""The language model: embed -> blocks (with their XL cache) -> head."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from memtx.memory import xl_cache
from memtx.memory.xl_cache import KVCacheState, XLCacheState
from memtx.models.blocks import AllAttentionBlock, TransformerBlock
from memtx.models.config import ModelConfig


@dataclass(frozen=True)
class LMOutput:
    logits: Tensor  # (B, T, V)
    state: XLCacheState  # the cache to pass with the next segment


class TransformerLM(nn.Module):
    """Byte/word LM whose layers attend over a cache of the previous segments' hidden states.

    One learned relative-position table of shape (Dh, span) is shared by all layers and heads (paper, section 4).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.emb_dropout = nn.Dropout(cfg.emb_dropout)
        self.pos = nn.Parameter(torch.randn(cfg.d_head, cfg.span))
        block = AllAttentionBlock if cfg.block == "allattn" else TransformerBlock
        self.blocks = nn.ModuleList(block(cfg) for _ in range(cfg.n_layers))
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size)

    def forward(self, x: Tensor, state: XLCacheState | None = None) -> LMOutput:
        """x (B, T) token ids; state from the previous segment of the same streams, or None to start fresh."""
        h = self.emb_dropout(self.embed(x))
        caches = state.hidden if state is not None else (None,) * len(self.blocks)
        next_caches = []
        for block, cache in zip(self.blocks, caches, strict=True):
            next_caches.append(xl_cache.extend(cache, h, block.cache_len()))
            h = block(h, cache, self.pos)
        logits = self.head(self.emb_dropout(h))
        return LMOutput(logits, XLCacheState(tuple(next_caches)))

    def kv_cache(self, state: XLCacheState | None, batch_size: int) -> KVCacheState:
        """Project a hidden-state cache into the K/V cache that ``decode`` continues from (exact: the same keys and
        values the next ``forward`` would compute)."""
        keys, values = [], []
        for i, block in enumerate(self.blocks):
            cache = state.hidden[i] if state is not None else None
            if cache is None or cache.shape[1] == 0:
                empty = self.pos.new_zeros(batch_size, self.cfg.n_heads, 0, self.cfg.d_head)
                k = v = empty
            else:
                k, v = block.attn.project_kv(cache[:, max(0, cache.shape[1] - (block.window() - 1)) :])
            keys.append(k)
            values.append(v)
        return KVCacheState(tuple(keys), tuple(values))

    def decode(self, x: Tensor, kv: KVCacheState) -> tuple[Tensor, KVCacheState]:
        """One token per stream: x (B, 1) -> (logits (B, V), next K/V cache). Equals ``forward`` position by
        position (tests/models/test_transformer_lm.py)."""
        h = self.emb_dropout(self.embed(x))
        keys, values = [], []
        for block, k, v in zip(self.blocks, kv.keys, kv.values, strict=True):
            h, (k, v) = block.decode(h, (k, v), self.pos)
            keys.append(k)
            values.append(v)
        return self.head(self.emb_dropout(h))[:, -1], KVCacheState(tuple(keys), tuple(values))

    def aux_loss(self) -> Tensor | float:
        """Regularisers to add to the training loss (the adaptive-span L1 penalty), 0.0 when there are none."""
        spans = [b.adaptive_span for b in self.blocks if b.adaptive_span is not None]
        return sum((s.penalty() for s in spans), torch.zeros(())) if spans else 0.0

    def after_step(self) -> None:
        """Projections to apply after each optimiser step (clamp the learned spans to [0, 1])."""
        for b in self.blocks:
            if b.adaptive_span is not None:
                b.adaptive_span.clamp_()

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def memory_from_tensors(tensors: dict[str, Tensor]) -> XLCacheState:
    """Inverse of ``state.to_tensors()`` for this model's memory (used when resuming a checkpoint)."""
    return XLCacheState.from_tensors(tensors)
