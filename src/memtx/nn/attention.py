"""Multi-head attention over ``[window ; segment]`` that accepts extra key/value prefixes (knows no memory)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from memtx.nn.linear import Linear, linear, prefixed_linear
from memtx.ops.attention import relative_attention, relative_attention_step, smear_keys


class MultiHeadAttention(nn.Module):
    """Projections around ``relative_attention``; no biases, as in the official All-attention code."""

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0, smear: bool = False) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.dropout = dropout
        self.q = Linear(d_model, d_model, bias=False)
        self.kv = Linear(d_model, 2 * d_model, bias=False)
        self.o = Linear(d_model, d_model, bias=False)
        # smeared keys (ops.attention.smear_keys): logit of each head's weight on the key itself, 0 = half and half
        self.smear = nn.Parameter(torch.zeros(n_heads, 1, 1)) if smear else None

    def _heads(self, x: Tensor) -> Tensor:  # (B, S, D) -> (B, H, S, Dh)
        b, s, d = x.shape
        return x.view(b, s, self.n_heads, d // self.n_heads).transpose(1, 2)

    def project_kv(self, x: Tensor, n_pad: int = 0) -> tuple[Tensor, Tensor]:
        """Keys and values of x (B, S, D) whose first n_pad positions are absent, each (B, H, S, Dh)."""
        k, v = self.kv(x).chunk(2, dim=-1)
        return self._smeared(self._heads(k), n_pad), self._heads(v)

    def newest_kv(self, x: Tensor, keep: int) -> tuple[Tensor, Tensor, Tensor | None]:
        """Keys and values (B, H, keep, Dh) of the newest ``keep`` of the states x (B, S, D), the older ones serving
        only as their keys' predecessors, and the newest key before smearing (None without smeared keys)."""
        k, v = self.kv(x).chunk(2, dim=-1)
        k, v = self._heads(k), self._heads(v)
        raw = k[:, :, -1] if self.smear is not None and k.shape[2] else None
        return self._smeared(k, 0)[:, :, k.shape[2] - keep :], v[:, :, k.shape[2] - keep :], raw

    def smear_step(self, k: Tensor, previous: Tensor | None) -> Tensor:
        """A new position's key (B, H, Dh) smeared with its predecessor's raw key (None: there was none)."""
        if self.smear is None:
            return k
        s = torch.sigmoid(self.smear[:, 0]).to(k.dtype)
        return torch.lerp(previous if previous is not None else torch.zeros_like(k), k, s)

    def _smeared(self, k: Tensor, n_pad: int) -> Tensor:
        return smear_keys(k, self.smear, n_pad) if self.smear is not None else k

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
        return self._smeared(self._heads(k), n_pad), self._heads(v), n_pad

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

    def step_weight(self) -> Tensor:
        """(3D, D): the query, key and value projections as one, the query rows times 1/sqrt(Dh) (the softmax
        temperature), for ``project_step``. A constant of the weights: take it again after they change."""
        return torch.cat([self.q.weight * (self.q.weight.shape[0] // self.n_heads) ** -0.5, self.kv.weight])

    def project_step(self, x: Tensor, weight: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """One position per stream: x (B, D), weight = ``step_weight()`` -> q (scaled), k, v, each (B, H, Dh)."""
        qkv = linear(x, weight).view(x.shape[0], 3, self.n_heads, -1)
        return qkv[:, 0], qkv[:, 1], qkv[:, 2]

    def attend_step(
        self,
        q: Tensor,
        keys: Tensor,
        values: Tensor,
        pos2: Tensor,
        n_prefix: int,
        filled: int,
        newest: int,
        span2: Tensor | None = None,
        shared: tuple[Tensor, Tensor] | None = None,
    ) -> Tensor:
        """One position per stream over a ring of keys and values (``relative_attention_step``, which says the
        layout): q (B, H, Dh) from ``project_step``; shared = a prefix not in the keys. Returns (B, D)."""
        extra_k, extra_v = shared if shared is not None else (None, None)
        out = relative_attention_step(q, keys, values, pos2, n_prefix, filled, newest, span2, extra_k, extra_v)
        return self.o(out.view(q.shape[0], -1))


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
