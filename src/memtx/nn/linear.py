"""nn.Linear whose single-row products compile to one fused loop (fast batch-1 decoding under torch.compile), and a
projection of ``[fixed prefix ; x]`` that computes no input gradient for the prefix."""

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
        return linear(x, self.weight, self.bias)


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """F.linear, or ``row_linear`` for a single row while torch.compile traces (``Linear``)."""
    if torch.compiler.is_compiling() and x.numel() == x.shape[-1]:
        return row_linear(x, weight, bias)
    return F.linear(x, weight, bias)


class _PrefixedLinear(torch.autograd.Function):
    """``F.linear([prefix ; x], weight)`` along dim 1 for a prefix that needs no gradient (detached cache states).
    Autograd's own backward would compute the input gradient of every row and then drop the prefix's; for an XL
    window of 512 cached states before 256 new ones that is 2/3 of the key/value projection's input gradient."""

    @staticmethod
    def forward(ctx, prefix: Tensor, x: Tensor, weight: Tensor) -> Tensor:
        full = torch.cat([prefix, x], dim=1)
        ctx.save_for_backward(full, weight)
        ctx.rows = x.shape[1]
        return F.linear(full, weight)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        full, weight = ctx.saved_tensors
        dx = torch.matmul(grad[:, full.shape[1] - ctx.rows :], weight) if ctx.needs_input_grad[1] else None
        dw = None
        if ctx.needs_input_grad[2]:
            dw = grad.reshape(-1, grad.shape[-1]).mT @ full.reshape(-1, full.shape[-1])
        return None, dx, dw


def prefixed_linear(prefix: Tensor, x: Tensor, weight: Tensor) -> Tensor:
    """F.linear(torch.cat([prefix, x], 1), weight) with no gradient computed for the prefix (it must not need one)."""
    if prefix.requires_grad:
        raise ValueError("prefixed_linear: the prefix needs a gradient; project torch.cat([prefix, x], 1) instead")
    return _PrefixedLinear.apply(prefix, x, weight)
