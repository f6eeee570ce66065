import pytest
import torch

from memtx.nn.attention import MultiHeadAttention, window_context


@pytest.mark.parametrize("cached", [0, 3, 6, 10])
def test_context_kv_equals_projecting_the_window_context(cached):
    """Keys/values of [window ; h] without projecting absent positions or differentiating cached states: the
    same values and the same gradients (of h and of the weights) as projecting window_context's concatenation."""
    torch.manual_seed(0)
    attn = MultiHeadAttention(8, 2).double()
    h = torch.randn(2, 4, 8, dtype=torch.float64, requires_grad=True)
    cache = torch.randn(2, cached, 8, dtype=torch.float64) if cached else None
    window = 6
    context, n_pad = window_context(cache, h, window)
    ref_k, ref_v = attn.project_kv(context)
    k, v, pad = attn.context_kv(cache, h, window)
    assert pad == n_pad and k.shape == ref_k.shape and v.shape == ref_v.shape
    assert torch.allclose(k, ref_k) and torch.allclose(v, ref_v)
    probe = torch.randn_like(k), torch.randn_like(v)
    ref = torch.autograd.grad((ref_k * probe[0]).sum() + (ref_v * probe[1]).sum(), (h, attn.kv.weight))
    got = torch.autograd.grad((k * probe[0]).sum() + (v * probe[1]).sum(), (h, attn.kv.weight))
    for r, g in zip(ref, got):
        assert torch.allclose(r, g)
