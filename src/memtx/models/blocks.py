"""Layers of the LM: the All-attention block and the Transformer baseline block, post-norm as in the papers or
pre-norm (``ModelConfig.norm``)."""

from __future__ import annotations

from torch import Tensor, nn

from memtx.memory.persistent import PersistentMemory
from memtx.memory.xl_cache import append_kv
from memtx.models.config import ModelConfig
from memtx.nn.adaptive_span import AdaptiveSpan
from memtx.nn.attention import MultiHeadAttention, window_context
from memtx.nn.feedforward import FeedForward


class AllAttentionBlock(nn.Module):
    """h <- LayerNorm(h + Attn(h over [cache ; h] and the persistent vectors)); no FFN, no residual dropout.
    Pre-norm: h <- h + Attn(LN(h) over LN([cache ; h])), the cache holding the blocks' un-normalised inputs."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.span = cfg.span
        self.pre_norm = cfg.norm == "pre"
        self.attn = MultiHeadAttention(cfg.d_model, cfg.n_heads, cfg.dropout)
        self.persistent = PersistentMemory(cfg.n_heads, cfg.d_head, cfg.n_persistent) if cfg.n_persistent > 0 else None
        self.adaptive_span = (
            AdaptiveSpan(cfg.n_heads, cfg.span, cfg.span_ramp, cfg.span_init, cfg.span_loss, cfg.span_cache)
            if cfg.adaptive_span
            else None
        )
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
            k, v = self.attn.project_kv(context)
        else:  # the cache is detached: no input gradient for it, no projection of absent positions
            k, v, n_pad = self.attn.context_kv(cache, h, window)
        return self._finish(h, self._attend(x, k, v, n_pad, window, pos))

    def keys_input(self, states: Tensor) -> Tensor:
        """What the keys and values of cached states are projected from (normalised first when pre-norm)."""
        return self.norm_attn(states) if self.pre_norm else states

    def decode(
        self, h: Tensor, kv: tuple[Tensor, Tensor, int], pos: Tensor, prefix: tuple[Tensor, Tensor] | None
    ) -> tuple[Tensor, tuple[Tensor, Tensor, int]]:
        """One new position: h (B, 1, D); kv = key and value buffers (B, H, capacity, Dh) whose first n positions
        hold the projected states before it (the inference twin of the hidden-state cache, ``KVCacheState``);
        prefix = this layer's ``persistent()``. Returns (h, the buffers with this position appended)."""
        window = self.window()
        x = self.keys_input(h)
        k_buf, v_buf, n = append_kv(*kv, *self.attn.project_kv(x), keep=window - 1)
        start = max(0, n - window)  # itself and the window-1 before it
        attn = self.attn.attend_step(
            x,
            k_buf[:, :, start:n],
            v_buf[:, :, start:n],
            pos[:, pos.shape[1] - window :],
            extra_kv=prefix,
            span_mask=self.adaptive_span.mask(window) if self.adaptive_span is not None else None,
        )
        return self._finish(h, attn), (k_buf, v_buf, n)

    def _attend(self, h: Tensor, k: Tensor, v: Tensor, n_pad: int, window: int, pos: Tensor) -> Tensor:
        return self.attn.attend(
            h,
            k,
            v,
            pos[:, pos.shape[1] - window :],
            n_pad,
            extra_kv=self.persistent() if self.persistent is not None else None,
            span_mask=self.adaptive_span.mask(window) if self.adaptive_span is not None else None,
        )

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
