"""A learned recency bias per head (ALiBi, Press et al. 2022, arXiv 2108.12409, with learned slopes): each head's
attention logits get ``-s_h * distance``, s_h = softplus(learned), starting from ALiBi's geometric slopes.

It is applied as a multiplicative mask ``exp(-s_h * d)`` on the context probabilities, renormalised jointly with the
persistent ones: the adaptive-span mask's slot in the attention kernels (``ops.attention``), which makes it exactly
``softmax(logits - s_h * d)`` over the context (up to the kernels' 1e-8 renormalising epsilon) and leaves the
persistent vectors, which have no position, unbiased. With adaptive span the two masks multiply. Not in the
All-attention paper: an option for tasks whose answer is the most recent of several matches (bAbI qa1's "where
is X": X's last move).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class RecencyBias(nn.Module):
    def __init__(self, n_heads: int, span: int) -> None:
        super().__init__()
        self.span = span
        # ALiBi's slopes 2^(-8 h / H), h = 1..H, through softplus's inverse
        slopes = [2.0 ** (-8.0 * (h + 1) / n_heads) for h in range(n_heads)]
        self.raw = nn.Parameter(torch.tensor([math.log(math.expm1(s)) for s in slopes]).view(n_heads, 1, 1))
        # distance of relative column r: span - 1 - r
        self.register_buffer("distance", torch.arange(span - 1, -1, -1, dtype=torch.float32), persistent=False)

    def slopes(self) -> Tensor:
        """(H,) the current per-head slopes."""
        return nn.functional.softplus(self.raw).flatten()

    def mask(self, window: int) -> Tensor:
        """(H, 1, window) multiplicative mask for the ``window`` nearest distances (last column = distance 0)."""
        return torch.exp(-self.slopes().view(-1, 1, 1) * self.distance[self.span - window :])
