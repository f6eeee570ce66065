"""Adaptive attention span (Sukhbaatar et al. 2019, arXiv 1905.07799): one learned span per head.

Soft mask over distance d in [0, span): m(d) = clamp((z * span - d) / ramp + 1, 0, 1), z in [0, 1] learned per
head, clamped after every optimiser step; L1 penalty coef * span * mean(z). Keys beyond the learned span have
mask 0, so the window (and the cache) can be trimmed without changing the output; trimming is rounded to
multiples of 64 as in the official code.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

TRIM_STEP = 64


class AdaptiveSpan(nn.Module):
    def __init__(self, n_heads: int, span: int, ramp: int, init: float, loss_coef: float, trim_cache: bool):
        super().__init__()
        self.span, self.ramp, self.loss_coef, self.trim_cache = span, ramp, loss_coef, trim_cache
        self.z = nn.Parameter(torch.full((n_heads, 1, 1), float(init)))
        # template[r] = -(distance of relative column r) = r - (span - 1)
        self.register_buffer("template", torch.linspace(1 - span, 0, span), persistent=False)

    def mask(self, window: int) -> Tensor:
        """(H, 1, window) soft mask for the `window` nearest distances (last column = distance 0)."""
        m = ((self.template[self.span - window :] + self.z * self.span) / self.ramp + 1).clamp(0, 1)
        return m

    def window(self) -> int:
        """Keys actually attended: the learned span plus the ramp, rounded up to the trimming granularity."""
        reach = max(0, min(self.span, math.ceil(self.z.detach().max().item() * self.span) + self.ramp))
        trim = min(self.span - 1, self.span - reach) // TRIM_STEP * TRIM_STEP
        return self.span - trim

    def cache_len(self) -> int:
        """Cache to keep: the window plus a margin of 64 in case the span grows (official code)."""
        return min(self.span, self.window() + TRIM_STEP) if self.trim_cache else self.span

    def penalty(self) -> Tensor:
        return self.loss_coef * self.span * self.z.mean()

    @torch.no_grad()
    def clamp_(self) -> None:
        self.z.clamp_(0, 1)
