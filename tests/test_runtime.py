"""Devices and precision: names resolve or fail in one line; models keep every tensor on their device (checked on
fake tensors of a device other than the CPU, so a tensor made on the CPU by mistake fails here as it would on a
GPU); bf16 autocast runs the projections in bf16 and attention in float32."""

import pytest
import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode

from memtx.errors import ConfigError
from memtx.models.config import ModelConfig
from memtx.models.generation import generate, prefill
from memtx.models.segments import segments
from memtx.models.transformer_lm import TransformerLM
from memtx.ops.attention import relative_attention
from memtx.runtime import autocast, resolve_device

SMALL = dict(n_layers=2, d_model=32, n_heads=2, n_persistent=8, span=16)
CONFIGS = {
    "allattn-xl-dropout": ModelConfig(**SMALL, dropout=0.1, emb_dropout=0.1),
    "transformer-rmt": ModelConfig(
        **{**SMALL, "n_persistent": 0}, block="transformer", d_ff=64, memory="rmt", mem_tokens=4
    ),  # fmt: skip
    "allattn-armt": ModelConfig(**SMALL, memory="armt", mem_tokens=4, mem_dim=16, mem_heads=2),
    "pre-norm-xl-len": ModelConfig(**SMALL, norm="pre", xl_len=8),
}


def test_device_names_resolve_or_fail_in_one_line():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == (torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu"))
    for bad in ("gpu", "cpu:0", "cuda:x", "cuda:"):
        with pytest.raises(ConfigError, match="--device must be auto, cpu, cuda or cuda:N"):
            resolve_device(bad)
    with pytest.raises(ConfigError, match="--device cuda:99: .*CUDA device"):
        resolve_device("cuda:99")


def _on_fake_device(model: nn.Module, mode: FakeTensorMode) -> nn.Module:
    """Every parameter and buffer of `model` as a fake tensor on the meta device (no data, real shapes)."""
    meta = torch.device("meta")
    for module in model.modules():
        for name, p in module._parameters.items():
            if p is not None:
                module._parameters[name] = nn.Parameter(FakeTensor(mode, p.detach().to(meta), meta), p.requires_grad)
        for name, b in module._buffers.items():
            if b is not None:
                module._buffers[name] = FakeTensor(mode, b.to(meta), meta)
    return model


@pytest.mark.parametrize("name", CONFIGS)
def test_models_keep_every_tensor_on_their_device(name):
    """Training through the segment loop (memory carried, gradients through it) and generation from a prompt and a
    sampling generator on the CPU, as the CLI passes them, with the model elsewhere: any tensor the code makes on
    the CPU and mixes in raises a device mismatch. (Not here, because fake tensors have no values: adaptive span,
    which reads its span with .item(), and the adaptive input / softmax, whose shapes depend on the token ids.)"""
    mode = FakeTensorMode(allow_non_fake_inputs=False)
    model = _on_fake_device(TransformerLM(CONFIGS[name]), mode).train()
    with mode:
        x = torch.randint(0, CONFIGS[name].vocab_size, (2, 24)).to(model.device)
        loss = 0.0
        for _, out in segments(model, x, None, 8, bptt_depth=1, targets=x):
            loss = loss + out.nll.sum()
        loss.backward()
        assert all(p.grad is not None and p.grad.device.type == "meta" for p in model.parameters() if p.requires_grad)
        model.eval()
        prompt = torch.randint(0, CONFIGS[name].vocab_size, (2, 11))  # on the CPU
        out = generate(model, prompt, 4, temperature=0.9, top_k=5, segment_len=8, generator=torch.Generator())
        assert out.shape == (2, 4) and out.device.type == "meta"
        state, tail = prefill(model, [[list(range(5)), [7] * 10], [list(range(15))]], 8)
        assert tail.device.type == "meta"


def test_bf16_autocast_keeps_attention_in_float32():
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 2, 5, 4).bfloat16(), torch.randn(2, 2, 9, 4).bfloat16(), torch.randn(2, 2, 9, 4)
    pos = torch.randn(4, 4)
    with autocast(torch.device("cpu"), "bf16"):
        out = relative_attention(q, k, v, pos)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, relative_attention(q.float(), k.float(), v, pos))
    model = TransformerLM(CONFIGS["allattn-xl-dropout"]).eval()
    x = torch.randint(0, 256, (2, 16))
    fp32 = model(x, None, x).nll.mean()
    with autocast(torch.device("cpu"), "bf16"):
        bf16 = model(x, None, x).nll
    assert bf16.dtype == torch.float32 and abs(bf16.mean().item() - fp32.item()) < 0.05
    with autocast(torch.device("cpu"), "fp32"):
        assert not torch.is_autocast_enabled("cpu")
