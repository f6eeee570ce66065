"""The recency bias is ALiBi with learned slopes: attention with it equals softmax(q.k + q.p - s_h * distance)
written out, forward and gradients (the slopes' included), with the persistent vectors unbiased."""

import torch

from memtx.nn.recency import RecencyBias
from memtx.ops.attention import relative_attention


def explicit_alibi(q, k, v, pos, slopes, extra_k, extra_v):
    """One softmax over [the T causal keys within the window ; the persistent keys] with the additive bias."""
    b, h, t, dh = q.shape
    window = pos.shape[-1]
    i, j = torch.arange(t).unsqueeze(1), torch.arange(t)
    distance = i - j
    visible = (distance >= 0) & (distance < window)
    pos_term = torch.einsum("bhid,dij->bhij", q, pos[:, (window - 1 - distance).clamp(0, window - 1)])
    logits = (q @ k.transpose(-1, -2) + pos_term) / dh**0.5 - slopes.view(h, 1, 1) * distance
    logits = logits.masked_fill(~visible, float("-inf"))
    logits = torch.cat([logits, torch.einsum("bhid,hnd->bhin", q, extra_k) / dh**0.5], dim=-1)
    p = torch.softmax(logits, dim=-1)
    return p[..., :t] @ v + torch.einsum("bhin,hnd->bhid", p[..., t:], extra_v)


def test_recency_mask_is_alibi_with_learned_slopes():
    torch.manual_seed(0)
    b, h, t, dh, window, n = 2, 3, 7, 4, 5, 2
    bias = RecencyBias(h, span=8).double()
    with torch.no_grad():
        bias.raw.copy_(torch.randn_like(bias.raw))
    q, k, v = (torch.randn(b, h, t, dh, dtype=torch.float64, requires_grad=True) for _ in range(3))
    pos = torch.randn(dh, window, dtype=torch.float64, requires_grad=True)
    extra_k, extra_v = (torch.randn(h, n, dh, dtype=torch.float64, requires_grad=True) for _ in range(2))
    pad = torch.zeros(b, h, window, dh, dtype=torch.float64)  # no cache: the whole window is absent
    out = relative_attention(
        q, torch.cat([pad, k], 2), torch.cat([pad, v], 2), pos, n_pad=window, extra_k=extra_k, extra_v=extra_v,
        span_mask=bias.mask(window),
    )  # fmt: skip
    expected = explicit_alibi(q, k, v, pos, bias.slopes(), extra_k, extra_v)
    torch.testing.assert_close(out, expected, rtol=1e-7, atol=1e-9)
    grad = torch.randn_like(out)
    leaves = (q, k, v, pos, extra_k, extra_v, bias.raw)
    got = torch.autograd.grad(out, leaves, grad)
    want = torch.autograd.grad(expected, leaves, grad)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-6, atol=1e-8)


def test_recency_starts_from_alibi_slopes():
    assert torch.allclose(RecencyBias(4, span=16).slopes(), torch.tensor([2.0**-2, 2.0**-4, 2.0**-6, 2.0**-8]))
