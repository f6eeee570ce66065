"""Persistent memory: the paper's re-parametrisation, parameter budget, and N=0 reduction."""

import math

import torch

from memtx.memory.persistent import PersistentMemory
from memtx.models.blocks import AllAttentionBlock, TransformerBlock
from memtx.models.config import ModelConfig


def test_reparametrisation_scales_back_at_use_time():
    torch.manual_seed(0)
    mem = PersistentMemory(n_heads=4, d_head=16, n_persistent=512)
    k, v = mem()
    # stored as randn/sqrt(Dh) and randn/sqrt(N) ...
    assert abs(mem.key.std().item() - 1 / math.sqrt(16)) < 0.01
    assert abs(mem.value.std().item() - 1 / math.sqrt(512)) < 0.002
    # ... used as unit-variance vectors
    assert abs(k.std().item() - 1) < 0.05 and abs(v.std().item() - 1) < 0.05
    torch.testing.assert_close(k, mem.key * 4.0)
    # gradients reach the stored parameters through the scale
    (k.sum() + v.sum()).backward()
    torch.testing.assert_close(mem.key.grad, torch.full_like(mem.key, 4.0))
    torch.testing.assert_close(mem.value.grad, torch.full_like(mem.value, math.sqrt(512)))


def test_parameter_budget_equals_ffn_of_width_n():
    cfg = ModelConfig(d_model=64, n_heads=4, n_persistent=96, span=8)
    block = AllAttentionBlock(cfg)
    assert sum(p.numel() for p in block.persistent.parameters()) == 2 * 64 * 96
    ffn = TransformerBlock(ModelConfig(d_model=64, n_heads=4, n_persistent=0, d_ff=96, span=8, block="transformer"))
    ffn_weights = ffn.ff.fc1.weight.numel() + ffn.ff.fc2.weight.numel()
    assert ffn_weights == 2 * 64 * 96


def test_zero_persistent_vectors_leaves_attention_only():
    """N=0: no persistent parameters, the layer is attention + norm (op-level equality with plain attention is
    tests/ops/test_attention.py::test_no_persistent_no_positions_is_plain_band_attention)."""
    block = AllAttentionBlock(ModelConfig(d_model=16, n_heads=2, n_persistent=0, span=5))
    assert block.persistent is None
    assert sum(p.numel() for p in block.parameters()) == 4 * 16 * 16 + 2 * 16
