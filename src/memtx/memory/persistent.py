"""Persistent memory of the All-attention network (Sukhbaatar et al. 2019, arXiv 1907.01470, section 4).

N learned key and value vectors per head and per layer, appended to the context keys/values of the layer's
attention and read through the same softmax (no position term). They play the role of the feed-forward sublayer,
which the All-attention layer drops: 2 * D * N parameters per layer, like an FFN of inner width N.

Re-parametrisation of the official code (copy it, or Adagrad training differs): keys are stored as
randn / sqrt(Dh) and values as randn / sqrt(N), and multiplied back by sqrt(Dh) and sqrt(N) at use time.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class PersistentMemory(nn.Module):
    def __init__(self, n_heads: int, d_head: int, n_persistent: int) -> None:
        super().__init__()
        self.key_scale, self.value_scale = math.sqrt(d_head), math.sqrt(n_persistent)
        self.key = nn.Parameter(torch.randn(n_heads, n_persistent, d_head) / self.key_scale)  # H, N, Dh
        self.value = nn.Parameter(torch.randn(n_heads, n_persistent, d_head) / self.value_scale)  # H, N, Dh

    def forward(self) -> tuple[Tensor, Tensor]:
        """The persistent keys and values as used by attention, each (H, N, Dh)."""
        return self.key * self.key_scale, self.value * self.value_scale
