"""nn.Linear whose single-row products compile to one fused loop (fast batch-1 decoding under torch.compile)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def row_linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """F.linear written as a broadcast multiply and a sum over the input features. Eager, this materialises
    (..., out, in); under torch.compile inductor turns it into one vectorised reduction loop, fused with its
    neighbours, instead of an extern BLAS call (whose fixed cost dominates at one row: ~40 us per matrix-vector
    product on 2 CPU cores)."""
    out = (x.unsqueeze(-2) * weight).sum(-1)
    return out if bias is None else out + bias


class Linear(nn.Linear):
    """nn.Linear (same parameters, initialisation and state dict keys) that computes a single row with
    ``row_linear`` while torch.compile traces: the compiled batch-1 decode step measured 1.07-1.56x faster (five
    alternated in-process runs, 2 cores); at batch 16 BLAS is as fast, so more rows keep F.linear."""

    def forward(self, x: Tensor) -> Tensor:
        if torch.compiler.is_compiling() and x.numel() == x.shape[-1]:
            return row_linear(x, self.weight, self.bias)
        return F.linear(x, self.weight, self.bias)
