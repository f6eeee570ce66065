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


class _Block(torch.nn.Module):
    """A stand-in layer with the blocks' call signature."""

    def __init__(self, d):
        super().__init__()
        self.lin = torch.nn.Linear(d, d)

    def forward(self, h, mask, pos):
        return h + torch.tanh(self.lin(h))


def _memory_and_blocks(n_layers=2, d=16):
    torch.manual_seed(0)
    mem = AssociativeMemory(n_layers=n_layers, d_model=d, n_tokens=4, d_mem=8, n_heads=2)
    for layer in mem.layers:
        torch.nn.init.normal_(layer.v.weight)  # zero at init: A would stay zero
    return mem, torch.nn.ModuleList(_Block(d) for _ in range(n_layers))


def _row_norms(state):
    return torch.stack([a.flatten(1).norm(dim=1) for a in state.A])  # layers, B


def test_norm_bound_is_recorded_in_training_and_caps_a_in_evaluation(tmp_path):
    from memtx.memory.associative import BOUND_DECAY
    from memtx.training.checkpoint import load_weights, save_weights

    mem, blocks = _memory_and_blocks()
    h, pos = torch.randn(3, 5, 16), torch.arange(5)
    state, expected = None, torch.zeros(2)
    for _ in range(3):  # training: the bound follows the leaky running max of every write's row norms
        _, state = mem.run(blocks, h, state, pos)
        expected = torch.maximum(_row_norms(state).max(dim=1).values, expected * BOUND_DECAY)
    assert torch.allclose(mem.norm_bound, expected) and (expected > 0).all()

    def stream(segments):
        state, norms, outs = None, [], []
        with torch.no_grad():
            for _ in range(segments):
                out, state = mem.run(blocks, h, state, pos)
                norms.append(_row_norms(state))
                outs.append(out)
        return torch.stack(norms), outs  # segments, layers, B

    mem.eval()
    capped, capped_out = stream(40)
    bound = mem.norm_bound.clone()
    assert (capped <= bound.view(1, -1, 1) * (1 + 1e-5)).all()
    mem.norm_bound.zero_()  # no bound: A outgrows it, and where it stays below, the cap changed nothing
    free, free_out = stream(40)
    assert (free.amax(dim=(0, 2)) > 2 * bound).all()
    below = int((free.amax(dim=(1, 2)) <= bound.min()).sum())  # leading segments whose A stayed below every bound
    assert below >= 1 and all(torch.equal(a, b) for a, b in zip(capped_out[: below + 1], free_out[: below + 1]))

    # saved with the weights; a file from before the bound existed loads with none (0: no cap)
    mem.norm_bound.copy_(bound)
    save_weights(mem.state_dict(), tmp_path / "new.safetensors")
    old = {k: v for k, v in mem.state_dict().items() if k != "norm_bound"}
    save_weights(old, tmp_path / "old.safetensors")
    fresh, _ = _memory_and_blocks()
    load_weights(fresh, tmp_path / "new.safetensors")
    assert torch.equal(fresh.norm_bound, bound)
    load_weights(fresh, tmp_path / "old.safetensors")
    assert torch.equal(fresh.norm_bound, torch.zeros(2))
