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


def reference_dpfp(x: Tensor, nu: int = 3) -> Tensor:
    """DPFP element by element: with r = [relu(x), relu(-x)] (length 2d), feature (j-1)*2d + i is r_i * r_{i-j}
    (indices mod 2d), j = 1..nu."""
    r = torch.cat([torch.relu(x), torch.relu(-x)], dim=-1)
    n = r.shape[-1]
    return torch.stack([r[..., i] * r[..., (i - j) % n] for j in range(1, nu + 1) for i in range(n)], dim=-1)


def _reference_features(x: Tensor, weight: Tensor, n_heads: int) -> Tensor:
    """(S, D) -> (H, S, K): per head, the L2-normalised DPFP of the projected rows."""
    proj = x @ weight.T
    heads = proj.view(x.shape[0], n_heads, -1).transpose(0, 1)
    f = reference_dpfp(heads)
    return f / f.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def reference_associative_read(layer, h: Tensor, A: Tensor, z: Tensor, eps: float = 1e-5) -> Tensor:
    """Twin of ``AssociativeLayer.read``: one row, head and position at a time."""
    b, s, d = h.shape
    n_heads = layer.n_heads
    out = torch.zeros(b, s, d, dtype=h.dtype)
    for r in range(b):
        fq = _reference_features(h[r], layer.q.weight, n_heads)
        for hd in range(n_heads):
            for t in range(s):
                value = A[r, hd].T @ fq[hd, t] / (z[r, hd] @ fq[hd, t] + eps)
                dv = value.shape[0]
                out[r, t, hd * dv : (hd + 1) * dv] = value
    return out


def reference_associative_write(layer, w: Tensor, A: Tensor, z: Tensor, eps: float = 1e-5) -> tuple[Tensor, Tensor]:
    """Twin of ``AssociativeLayer.write``: every write token m reads the start-of-segment (A, z) and adds its
    outer product beta_m * k_m (v_m - A k_m / (z.k_m + eps))^T; z adds gamma_m k_m, gamma held constant."""
    b, m, d = w.shape
    n_heads = layer.n_heads
    new_a, new_z = A.clone(), z.clone()
    for r in range(b):
        fk = _reference_features(w[r], layer.k.weight, n_heads)  # H, M, K
        v = (w[r] @ layer.v.weight.T).view(m, n_heads, -1)  # M, H, Dv
        beta = torch.sigmoid(w[r] @ layer.beta.weight.T + layer.beta.bias)  # M, H
        for hd in range(n_heads):
            for j in range(m):
                k = fk[hd, j]
                dot = z[r, hd] @ k + eps
                held = A[r, hd].T @ k / dot
                new_a[r, hd] = new_a[r, hd] + beta[j, hd] * torch.outer(k, v[j, hd] - held)
                gamma = (1 - dot / (k @ k)).clamp(0, 1).detach()
                new_z[r, hd] = new_z[r, hd] + gamma * k
    return new_a, new_z
