"""The fast relative attention equals its slow twin, forward and every gradient."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from memtx.memory.reference import reference_attention
from memtx.ops.attention import band_scatter, band_view, causal_applies, relative_attention


def _inputs(B, H, T, W, Dh, N, span_mask, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64).requires_grad_()  # noqa: E731
    x = dict(q=r(B, H, T, Dh), k=r(B, H, W + T, Dh), v=r(B, H, W + T, Dh), pos=r(Dh, W))
    if N:
        x.update(extra_k=r(H, N, Dh), extra_v=r(H, N, Dh))
    if span_mask:
        x["span_mask"] = torch.rand(H, 1, W, generator=g, dtype=torch.float64).requires_grad_()
    return x


@settings(max_examples=40, deadline=None)
@given(
    T=st.integers(1, 6),
    W=st.integers(1, 7),
    N=st.integers(0, 3),
    span_mask=st.booleans(),
    pad=st.integers(0, 7),
    chunk=st.integers(1, 7),
    group=st.integers(1, 4),
)
def test_fast_equals_reference_forward_and_grads(T, W, N, span_mask, pad, chunk, group):
    """Every band block (one block, ragged last blocks of queries or batch rows, one query per block) gives the
    reference."""
    n_pad = min(pad, W)
    x = _inputs(3, 2, T, W, 3, N, span_mask)
    fast = relative_attention(**x, n_pad=n_pad, chunk=chunk, group=group)
    ref = reference_attention(**x, n_pad=n_pad)
    torch.testing.assert_close(fast, ref, rtol=1e-10, atol=1e-10)
    w = torch.randn_like(fast)
    g_fast = torch.autograd.grad((fast * w).sum(), list(x.values()))
    g_ref = torch.autograd.grad((ref * w).sum(), list(x.values()))
    for name, a, b in zip(x, g_fast, g_ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9, msg=f"gradient of {name}")


@pytest.mark.parametrize("T, W", [(5, 5), (3, 6), (2, 3), (7, 4), (8, 4), (1, 1), (3, 9)])
@pytest.mark.parametrize("N", [0, 2])
@pytest.mark.parametrize("span_mask", [False, True])
def test_causal_layout_equals_reference_forward_and_grads(T, W, N, span_mask):
    """No key in the window (n_pad = W: no cache): the causal layout, for segments shorter than, as long as and
    longer than the window (up to 2W), with and without persistent vectors and a span (or recency) mask, whose
    columns past the segment's distances get no gradient."""
    x = _inputs(2, 3, T, W, 4, N, span_mask, seed=T * 10 + W)
    assert causal_applies(T, W, W, x.get("span_mask"), 0.0, False)
    fast = relative_attention(**x, n_pad=W)
    ref = reference_attention(**x, n_pad=W)
    torch.testing.assert_close(fast, ref, rtol=1e-10, atol=1e-10)
    w = torch.randn_like(fast)
    g_fast = torch.autograd.grad((fast * w).sum(), list(x.values()))
    g_ref = torch.autograd.grad((ref * w).sum(), list(x.values()))
    for name, a, b in zip(x, g_fast, g_ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9, msg=f"gradient of {name}")


@pytest.mark.parametrize("span_mask", [False, True])
def test_dropout_gradients_are_those_of_the_forward(span_mask):
    """Attention dropout (band path): reproducible under a seed, not the no-dropout output, and its gradients
    (every input, span mask included) match finite differences of the same dropped forward."""
    x = _inputs(3, 2, 5, 4, 3, 2, span_mask)

    def dropped(*args):
        torch.manual_seed(7)  # the same keep masks at every call
        return relative_attention(*args[:4], n_pad=1, extra_k=args[4], extra_v=args[5],
                                  span_mask=args[6] if span_mask else None, dropout_p=0.3, training=True,
                                  chunk=2, group=2)  # fmt: skip

    inputs = tuple(x.values())
    out = dropped(*inputs)
    torch.testing.assert_close(out, dropped(*inputs), rtol=0, atol=0)
    assert not torch.allclose(out, relative_attention(*inputs[:4], n_pad=1, extra_k=inputs[4], extra_v=inputs[5],
                                                      span_mask=inputs[6] if span_mask else None))  # fmt: skip
    assert torch.autograd.gradcheck(dropped, inputs)


def test_causal_layout_only_without_window_keys_or_dropout():
    assert not causal_applies(5, 5, 4, None, 0.0, False)  # one window key present: the band
    assert causal_applies(5, 5, 5, torch.ones(1, 1, 5), 0.0, False)
    assert not causal_applies(5, 5, 5, torch.ones(1, 1, 5), 0.1, True)
    assert not causal_applies(5, 5, 5, None, 0.1, True)
    assert causal_applies(5, 5, 5, None, 0.1, False)  # dropout off in eval
    assert not causal_applies(11, 5, 5, None, 0.0, False)  # a segment much longer than the window: the band


def test_no_persistent_no_positions_is_plain_band_attention():
    """N=0 and a zero position table reduce to softmax attention under the causal band mask."""
    B, H, T, W, Dh = 2, 3, 5, 4, 8
    x = _inputs(B, H, T, W, Dh, 0, False)
    out = relative_attention(x["q"], x["k"], x["v"], torch.zeros(Dh, W, dtype=torch.float64), n_pad=1)
    a = W + torch.arange(T).unsqueeze(1)  # absolute index of each query
    j = torch.arange(W + T)
    band = (j <= a) & (j > a - W) & (j >= 1)
    plain = F.scaled_dot_product_attention(x["q"], x["k"], x["v"], attn_mask=band)
    torch.testing.assert_close(out, plain)


def test_band_view_and_scatter_are_inverse_index_maps():
    T, W = 4, 3
    scores = torch.arange(T * (W + T), dtype=torch.float64).view(T, W + T)
    rel = band_view(scores, W)
    for i in range(T):
        for r in range(W):
            assert rel[i, r] == scores[i, i + 1 + r]
    back = band_scatter(rel)
    mask = torch.zeros(T, W + T, dtype=torch.bool)
    for i in range(T):
        mask[i, i + 1 : i + 1 + W] = True
    assert torch.equal(back[mask], scores[mask])
    assert torch.all(back[~mask] == 0)
    # the reused scratch buffer gives the same, whatever was scattered into it before
    band_scatter(torch.full_like(rel, 7.0), scratch=True)
    assert torch.equal(band_scatter(rel, scratch=True), back)


def test_key_count_mismatch_is_rejected():
    x = _inputs(1, 1, 3, 4, 2, 0, False)
    with pytest.raises(ValueError, match="expected window"):
        relative_attention(x["q"], x["k"][..., 1:, :], x["v"], x["pos"])


@settings(max_examples=50, deadline=None)
@given(
    c=st.integers(1, 7),
    extra=st.integers(0, 7),
    N=st.integers(0, 3),
    span_mask=st.booleans(),
    turn=st.integers(0, 20),
    shared=st.booleans(),
)
def test_step_equals_reference_for_one_new_position(c, extra, N, span_mask, turn, shared):
    """The generation twin: one query over its C <= W newest keys, kept in a ring of W slots after the N
    persistent ones (or beside them, shared by the batch), the ring turned to any position, equals the reference
    with the window padded."""
    from memtx.ops.attention import doubled, relative_attention_step

    W = c + extra
    x = _inputs(2, 2, 1, W, 3, N, span_mask)
    k, v = x["k"][..., W + 1 - c :, :], x["v"][..., W + 1 - c :, :]  # the c newest keys, its own last
    length = c if c < W else c + turn  # positions written: the ring is full once c == W
    slots = [(length - c + i) % W for i in range(c)]
    inside = N if not shared else 0
    keys, values = (torch.zeros(2, 2, inside + W, 3, dtype=torch.float64) for _ in range(2))
    if inside:
        keys[:, :, :N], values[:, :, :N] = x["extra_k"], x["extra_v"]
    keys[:, :, [inside + s for s in slots]], values[:, :, [inside + s for s in slots]] = k, v
    outside = (x["extra_k"], x["extra_v"]) if N and shared else (None, None)
    span2 = doubled(x["span_mask"]) if span_mask else None
    q = x["q"][:, :, 0] * x["q"].shape[-1] ** -0.5
    step = relative_attention_step(q, keys, values, doubled(x["pos"]), inside, c, slots[-1], span2, *outside)
    extras = {name: x[name] for name in ("extra_k", "extra_v", "span_mask") if name in x}
    ref = reference_attention(x["q"], x["k"], x["v"], x["pos"], n_pad=W + 1 - c, **extras)
    torch.testing.assert_close(step, ref[:, :, 0], rtol=1e-10, atol=1e-10)


def test_smeared_keys_mix_each_key_with_the_one_before():
    """s k_j + (1 - s) k_{j-1} per head; zero before the first key and before the first present one."""
    from memtx.ops.attention import smear_keys

    g = torch.Generator().manual_seed(0)
    k, mix = torch.randn(2, 3, 6, 4, generator=g, dtype=torch.float64), torch.randn(3, 1, 1, generator=g)
    s = torch.sigmoid(mix).double()
    before = torch.cat([torch.zeros_like(k[:, :, :1]), k[:, :, :-1]], dim=2)
    torch.testing.assert_close(smear_keys(k, mix), s * k + (1 - s) * before)
    before[:, :, :3] = 0.0  # positions 0, 1 absent: position 2 is the first present
    torch.testing.assert_close(smear_keys(k, mix, n_pad=2), s * k + (1 - s) * before)
