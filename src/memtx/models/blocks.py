"""Layers of the LM: the All-attention block and the Transformer baseline block, post-norm as in the papers or
pre-norm (``ModelConfig.norm``)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import Tensor, nn

from memtx.memory.persistent import PersistentMemory
from memtx.memory.xl_cache import RingKV, ring_append, ring_kv
from memtx.models.config import ModelConfig
from memtx.nn.adaptive_span import AdaptiveSpan
from memtx.nn.attention import MultiHeadAttention, window_context
from memtx.nn.feedforward import FeedForward
from memtx.nn.recency import RecencyBias
from memtx.ops.attention import doubled


@dataclass(frozen=True)
class StepTables:
    """What a block's generation step reads from its weights, prepared once per ``generate``
    (``AllAttentionBlock.step_tables``): take them again after the weights change."""

    weight: Tensor  # (3D, D) the query/key/value projection (MultiHeadAttention.step_weight)
    pos2: Tensor  # (Dh, 2W) the window's position columns, twice (ops.attention.doubled)
    span2: Tensor | None  # (H, 1, 2W) the span mask likewise, or None


class AllAttentionBlock(nn.Module):
    """h <- LayerNorm(h + Attn(h over [cache ; h] and the persistent vectors)); no FFN, no residual dropout.
    Pre-norm: h <- h + Attn(LN(h) over LN([cache ; h])), the cache holding the blocks' un-normalised inputs."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.span = cfg.span
        self.pre_norm = cfg.norm == "pre"
        self.attn = MultiHeadAttention(cfg.d_model, cfg.n_heads, cfg.dropout, cfg.smear_keys)
        self.persistent = PersistentMemory(cfg.n_heads, cfg.d_head, cfg.n_persistent) if cfg.n_persistent > 0 else None
        self.adaptive_span = (
            AdaptiveSpan(cfg.n_heads, cfg.span, cfg.span_ramp, cfg.span_init, cfg.span_loss, cfg.span_cache)
            if cfg.adaptive_span
            else None
        )
        self.recency = RecencyBias(cfg.n_heads, cfg.span) if cfg.recency_bias else None
        self.norm_attn = nn.LayerNorm(cfg.d_model)

    def cache_len(self) -> int:
        return self.adaptive_span.cache_len() if self.adaptive_span is not None else self.span

    def window(self) -> int:
        """Keys each query sees: itself and window-1 before it (the learned span, with adaptive span)."""
        return self.adaptive_span.window() if self.adaptive_span is not None else self.span

    def forward(self, h: Tensor, cache: Tensor | None, pos: Tensor) -> Tensor:
        """h (B, T, D); cache (B, C, D) detached states before h, or None; pos (Dh, span) shared table."""
        # no wider than the states there are: without a cache (memory tokens, associative memory, a first segment)
        # a span of 512 over a segment of 256 would score 512 padded keys per query
        window = min(self.window(), h.shape[1] + (cache.shape[1] if cache is not None else 0))
        x = h
        if self.pre_norm:  # the norm's parameters take gradients from the cached rows too: project it all
            context, n_pad = window_context(cache, h, window)
            context = self.norm_attn(context)
            x = context[:, context.shape[1] - h.shape[1] :]
            k, v = self.attn.project_kv(context, n_pad)
        else:  # the cache is detached: no input gradient for it, no projection of absent positions
            k, v, n_pad = self.attn.context_kv(cache, h, window)
        return self._finish(h, self._attend(x, k, v, n_pad, window, pos))

    def keys_input(self, states: Tensor) -> Tensor:
        """What the keys and values of cached states are projected from (normalised first when pre-norm)."""
        return self.norm_attn(states) if self.pre_norm else states

    def step_tables(self, pos: Tensor) -> StepTables:
        """This block's generation constants; pos (Dh, span) the shared position table."""
        window = self.window()
        span = self.span_mask(window)
        return StepTables(
            self.attn.step_weight(),
            doubled(pos[:, pos.shape[1] - window :]),
            doubled(span) if span is not None else None,
        )

    def ring(self, cache: Tensor) -> RingKV:
        """The generation twin of this layer's cache (B, C, D): keys and values of its newest states, at most
        window - 1 (the new position is the window's last), after the persistent vectors."""
        window = self.window()
        states = self.keys_input(cache[:, max(0, cache.shape[1] - window) :])  # one more: the oldest key's predecessor
        k, v, raw = self.attn.newest_kv(states, min(states.shape[1], window - 1))
        return ring_kv(k, v, self.persistent() if self.persistent is not None else None, window, raw)

    def decode(self, h: Tensor, ring: RingKV, tables: StepTables) -> tuple[Tensor, RingKV]:
        """One new position per stream: h (B, D). Returns (h, the ring with this position written)."""
        q, k, v = self.attn.project_step(self.keys_input(h), tables.weight)
        ring = ring_append(
            ring, self.attn.smear_step(k, ring.previous_key), v, k if self.attn.smear is not None else None
        )
        attn = self.attn.attend_step(
            q, ring.keys, ring.values, tables.pos2, ring.n_prefix, ring.filled, ring.newest, tables.span2, ring.shared
        )
        return self._finish(h, attn), ring

    def _attend(self, h: Tensor, k: Tensor, v: Tensor, n_pad: int, window: int, pos: Tensor) -> Tensor:
        return self.attn.attend(
            h,
            k,
            v,
            pos[:, pos.shape[1] - window :],
            n_pad,
            extra_kv=self.persistent() if self.persistent is not None else None,
            span_mask=self.span_mask(window),
        )

    def span_mask(self, window: int) -> Tensor | None:
        """(H, 1, window) multiplicative mask on the context probabilities: the adaptive span's, the recency
        bias's, their product, or None."""
        masks = [m.mask(window) for m in (self.adaptive_span, self.recency) if m is not None]
        return math.prod(masks) if masks else None

    def _finish(self, h: Tensor, attn: Tensor) -> Tensor:
        return h + attn if self.pre_norm else self.norm_attn(h + attn)


class TransformerBlock(AllAttentionBlock):
    """The baseline: the attention sublayer above (persistent vectors only if n_persistent > 0), then an FFN."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        self.ff = FeedForward(cfg.d_model, cfg.d_ff, cfg.dropout)
        self.norm_ff = nn.LayerNorm(cfg.d_model)

    def _finish(self, h: Tensor, attn: Tensor) -> Tensor:
        h = super()._finish(h, attn)
        return h + self.ff(self.norm_ff(h)) if self.pre_norm else self.norm_ff(h + self.ff(h))
