"""Slow, obviously correct versions of the memory mechanisms, used only by the tests."""

from __future__ import annotations

import torch
from torch import Tensor

from memtx.ops.attention import RENORM_EPS


def reference_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    pos: Tensor,
    *,
    n_pad: int = 0,
    extra_k: Tensor | None = None,
    extra_v: Tensor | None = None,
    span_mask: Tensor | None = None,
) -> Tensor:
    """Twin of ``memtx.ops.attention.relative_attention`` (no dropout): one query at a time, absolute indices.

    Query i sits at key index a = W + i and sees every existing key j (j >= n_pad) with 0 <= a - j < W, with
    logit q.k_j + q.pos[:, W-1-(a-j)], plus the persistent keys (logit q.extra_k_n); one softmax over all of them
    scaled by 1/sqrt(Dh); the span mask multiplies the context weights, then all weights are renormalised.
    """
    t, d_head = q.shape[-2], q.shape[-1]
    window = pos.shape[-1]
    outs = []
    for i in range(t):
        a = window + i
        keys = torch.arange(max(n_pad, a - window + 1), a + 1)
        dist = a - keys
        qi = q[..., i, :]  # B,H,Dh
        ctx_logit = torch.einsum("bhd,bhjd->bhj", qi, k[..., keys, :])
        ctx_logit = ctx_logit + torch.einsum("bhd,dj->bhj", qi, pos[:, window - 1 - dist])
        logits = ctx_logit
        if extra_k is not None:
            logits = torch.cat([logits, torch.einsum("bhd,hnd->bhn", qi, extra_k)], dim=-1)
        w = torch.softmax(logits / d_head**0.5, dim=-1)
        if span_mask is not None:
            m = span_mask[:, 0, window - 1 - dist]  # H, J
            w = torch.cat([w[..., : len(keys)] * m, w[..., len(keys) :]], dim=-1)
            w = w / (w.sum(-1, keepdim=True) + RENORM_EPS)
        out = torch.einsum("bhj,bhjd->bhd", w[..., : len(keys)], v[..., keys, :])
        if extra_v is not None:
            out = out + torch.einsum("bhn,hnd->bhd", w[..., len(keys) :], extra_v)
        outs.append(out)
    return torch.stack(outs, dim=-2)
