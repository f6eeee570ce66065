"""ARMT associative memory: the fast einsum path equals the slow per-token loop (forward and gradients)."""

import pytest
import torch

from memtx.memory.associative import AssociativeLayer, AssociativeMemory, dpfp
from memtx.memory.reference import reference_associative_read, reference_associative_write, reference_dpfp


def _layer(d_model=8, d_mem=4, n_heads=2):
    torch.manual_seed(0)
    layer = AssociativeLayer(d_model, d_mem, n_heads).double()
    torch.nn.init.normal_(layer.v.weight)  # zero at init: give it values so the test can fail
    return layer


def test_dpfp_matches_elementwise_definition():
    x = torch.randn(3, 5, 6, dtype=torch.double)
    assert torch.allclose(dpfp(x), reference_dpfp(x))
    assert dpfp(x).shape[-1] == 2 * 3 * 6 and (dpfp(x) >= 0).all()


@pytest.mark.parametrize("n_heads", [1, 2])
def test_write_then_read_equal_reference_forward_and_gradients(n_heads):
    layer = _layer(n_heads=n_heads)
    b, m, s, kdim, dv = 2, 3, 5, 2 * 3 * 4 // n_heads, 8 // n_heads
    # a non-trivial starting state: one write from zero, as after a first segment
    a0 = torch.zeros(b, n_heads, kdim, dv, dtype=torch.double)
    z0 = torch.zeros(b, n_heads, kdim, dtype=torch.double)
    w0 = torch.randn(b, m, 8, dtype=torch.double)
    a1, z1 = layer.write(w0, a0, z0)
    w = torch.randn(b, m, 8, dtype=torch.double, requires_grad=True)
    h = torch.randn(b, s, 8, dtype=torch.double, requires_grad=True)

    def run(write, read):
        a2, z2 = write(layer, w, a1, z1) if read is not None else (None, None)
        return a2, z2, read(layer, h, a2, z2)

    fast = run(lambda lay, *a: lay.write(*a), lambda lay, *a: lay.read(*a))
    slow = run(reference_associative_write, reference_associative_read)
    for f, r in zip(fast, slow, strict=True):
        assert torch.allclose(f, r, atol=1e-10)
    assert fast[2].abs().max() > 1e-3  # the read is not trivially zero
    params = [h, w, *layer.parameters()]
    loss_fast = (fast[2] ** 2).sum() + fast[0].sum() + fast[1].sum()
    loss_slow = (slow[2] ** 2).sum() + slow[0].sum() + slow[1].sum()
    g_fast = torch.autograd.grad(loss_fast, params, retain_graph=True)
    g_slow = torch.autograd.grad(loss_slow, params)
    for gf, gs in zip(g_fast, g_slow, strict=True):
        assert torch.allclose(gf, gs, atol=1e-9)


def test_zero_state_reads_zero_and_delta_rule_stores_a_pair():
    layer = _layer(n_heads=1)
    a = torch.zeros(1, 1, 24, 8, dtype=torch.double)
    z = torch.zeros(1, 1, 24, dtype=torch.double)
    w = torch.randn(1, 1, 8, dtype=torch.double)
    assert layer.read(w, a, z).abs().max() == 0
    with torch.no_grad():
        layer.beta.bias.fill_(50.0)  # beta = 1: a single write stores v under its key
        layer.q.weight.copy_(layer.k.weight)  # query with the key
        a, z = layer.write(w, a, z)
        assert torch.allclose(layer.read(w, a, z), layer.v(w), atol=1e-4)
        a2, z2 = layer.write(w, a, z)  # writing the same pair again changes nothing it returns (delta rule)
        assert torch.allclose(layer.read(w, a2, z2), layer.v(w), atol=1e-4)


def test_memory_state_shapes_and_constant_size():
    mem = AssociativeMemory(n_layers=3, d_model=16, n_tokens=4, d_mem=8, n_heads=2)
    s = mem.initial_state(5, torch.zeros(1))
    assert len(s.A) == 3 and s.A[0].shape == (5, 2, 24, 8) and s.z[0].shape == (5, 2, 24)
