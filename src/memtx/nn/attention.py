"""Multi-head attention over ``[window ; segment]`` that accepts extra key/value prefixes (knows no memory)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from memtx.nn.linear import Linear, prefixed_linear
from memtx.ops.attention import relative_attention, relative_attention_step


class MultiHeadAttention(nn.Module):
    """Projections around ``relative_attention``; no biases, as in the official All-attention code."""

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.dropout = dropout
        self.q = Linear(d_model, d_model, bias=False)
        self.kv = Linear(d_model, 2 * d_model, bias=False)
        self.o = Linear(d_model, d_model, bias=False)

    def _heads(self, x: Tensor) -> Tensor:  # (B, S, D) -> (B, H, S, Dh)
        b, s, d = x.shape
        return x.view(b, s, self.n_heads, d // self.n_heads).transpose(1, 2)

    def project_kv(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Keys and values of x (B, S, D), each (B, H, S, Dh)."""
        k, v = self.kv(x).chunk(2, dim=-1)
        return self._heads(k), self._heads(v)

    def context_kv(self, cache: Tensor | None, h: Tensor, window: int) -> tuple[Tensor, Tensor, int]:
        """Keys and values of ``window_context(cache, h, window)`` for a cache that needs no gradient, computed
        without its waste: absent (zero) positions are not projected, and no input gradient is computed for the
        cached states. Returns k, v (B, H, W+T, Dh) and n_pad, as ``project_kv`` of the context would."""
        c = 0 if cache is None else min(cache.shape[1], window)
        kv = self.kv(h) if c == 0 else prefixed_linear(cache[:, cache.shape[1] - c :], h, self.kv.weight)
        n_pad = window - c
        if n_pad:
            kv = F.pad(kv, (0, 0, n_pad, 0))
        k, v = kv.chunk(2, dim=-1)
        return self._heads(k), self._heads(v), n_pad

    def attend(
        self,
        h: Tensor,
        k: Tensor,
        v: Tensor,
        pos: Tensor,
        n_pad: int = 0,
        extra_kv: tuple[Tensor, Tensor] | None = None,
        span_mask: Tensor | None = None,
    ) -> Tensor:
        """h (B, T, D) queries; k, v (B, H, W+T, Dh) of [window ; h]; pos (Dh, W). Returns (B, T, D)."""
        extra_k, extra_v = extra_kv if extra_kv is not None else (None, None)
        out = relative_attention(
            self._heads(self.q(h)),
            k,
            v,
            pos,
            n_pad=n_pad,
            extra_k=extra_k,
            extra_v=extra_v,
            span_mask=span_mask,
            dropout_p=self.dropout,
            training=self.training,
        )
        b, _, t, _ = out.shape
        return self.o(out.transpose(1, 2).reshape(b, t, -1))

    def attend_step(
        self,
        h: Tensor,
        k: Tensor,
        v: Tensor,
        pos: Tensor,
        extra_kv: tuple[Tensor, Tensor] | None = None,
        span_mask: Tensor | None = None,
    ) -> Tensor:
        """One new position: h (B, 1, D); k, v (B, H, C, Dh) the keys it sees, its own last. Returns (B, 1, D)."""
        extra_k, extra_v = extra_kv if extra_kv is not None else (None, None)
        out = relative_attention_step(
            self._heads(self.q(h)), k, v, pos, extra_k=extra_k, extra_v=extra_v, span_mask=span_mask
        )
        return self.o(out.transpose(1, 2).reshape(h.shape[0], 1, -1))


def window_context(cache: Tensor | None, h: Tensor, window: int) -> tuple[Tensor, int]:
    """[last `window` cached states ; h], left-padded with zeros when the cache is shorter.

    cache (B, C, D) or None; h (B, T, D). Returns ((B, W+T, D), n_pad) where n_pad positions are absent.
    """
    b, _, d = h.shape
    c = 0 if cache is None else cache.shape[1]
    if c >= window:
        return torch.cat([cache[:, c - window :], h], dim=1), 0
    parts = [h.new_zeros(b, window - c, d)] + ([cache] if c else []) + [h]
    return torch.cat(parts, dim=1), window - c
