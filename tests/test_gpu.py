"""The CUDA path: run with ``pytest -m gpu`` on a machine with a GPU (``benchmarks/gpu_check.sh`` runs these and
the device benchmarks in one go). Skipped elsewhere; the default run deselects them."""

from dataclasses import replace

import pytest
import torch
from helpers import tiny_run
from test_runtime import CONFIGS

from memtx.memory.reference import reference_attention
from memtx.models.generation import generate
from memtx.models.segments import segments
from memtx.models.transformer_lm import TransformerLM
from memtx.ops.attention import relative_attention
from memtx.training.metrics import read_metrics
from memtx.training.trainer import train

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]
CUDA = torch.device("cuda")


@pytest.mark.parametrize(
    "T, W, N, pad, span", [(6, 5, 3, 0, True), (7, 4, 0, 2, False), (5, 5, 2, 5, False), (5, 5, 2, 5, True)]
)
def test_attention_on_cuda_equals_the_reference(T, W, N, pad, span):
    """Band path (with span mask, padding) and causal layout (with and without a span mask) on the GPU, float64:
    forward and every gradient."""
    g = torch.Generator().manual_seed(0)
    x = {"q": torch.randn(2, 3, T, 4, generator=g), "k": torch.randn(2, 3, W + T, 4, generator=g),
         "v": torch.randn(2, 3, W + T, 4, generator=g), "pos": torch.randn(4, W, generator=g)}  # fmt: skip
    if N:
        x.update(extra_k=torch.randn(3, N, 4, generator=g), extra_v=torch.randn(3, N, 4, generator=g))
    if span:
        x["span_mask"] = torch.rand(3, 1, W, generator=g)
    cpu = {k: v.double().requires_grad_() for k, v in x.items()}
    gpu = {k: v.double().to(CUDA).requires_grad_() for k, v in x.items()}
    ref = reference_attention(**cpu, n_pad=pad)
    out = relative_attention(**gpu, n_pad=pad)
    torch.testing.assert_close(out.cpu(), ref)
    w = torch.randn_like(ref)
    g_ref = torch.autograd.grad((ref * w).sum(), list(cpu.values()))
    g_gpu = torch.autograd.grad((out * w.to(CUDA)).sum(), list(gpu.values()))
    for name, a, b in zip(cpu, g_gpu, g_ref, strict=True):
        torch.testing.assert_close(a.cpu(), b, msg=f"gradient of {name}")


@pytest.mark.parametrize("name", CONFIGS)
def test_model_on_cuda_computes_what_it_computes_on_the_cpu(name):
    """Same weights, three segments with the memory carried: the same nats per token (float32 tolerance)."""
    torch.manual_seed(0)
    model = TransformerLM(replace(CONFIGS[name], dropout=0.0, emb_dropout=0.0)).eval()
    x = torch.randint(0, model.cfg.vocab_size, (2, 24))
    cpu = torch.cat([out.nll for _, out in segments(model, x, None, 8, targets=x)], dim=1)
    model.to(CUDA)
    gpu = torch.cat([out.nll for _, out in segments(model, x.to(CUDA), None, 8, targets=x.to(CUDA))], dim=1)
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-4, atol=1e-4)
    tokens = generate(model, x[:, :11], 6, temperature=0, segment_len=8)  # a CPU prompt, as the CLI passes it
    assert tokens.shape == (2, 6) and tokens.device.type == "cuda"


def _bpc(run_dir):
    return [r["train_bpc"] for r in read_metrics(run_dir / "metrics.jsonl") if "train_bpc" in r]


def test_training_on_cuda_follows_the_cpu_and_resumes(tmp_path, corpus_file):
    """Six steps without dropout: the GPU's losses are the CPU's (float32 tolerance); the GPU run resumed from its
    step-3 checkpoint continues as the uninterrupted one."""
    cfg = replace(tiny_run(str(corpus_file)), checkpoint_every=3)
    cfg = replace(cfg, model=replace(cfg.model, dropout=0.0))
    train(replace(cfg, device="cpu"), tmp_path / "cpu", progress=False)
    gpu = train(replace(cfg, device="cuda"), tmp_path / "gpu", progress=False)
    assert gpu["steps"] == 6
    assert _bpc(tmp_path / "gpu") == pytest.approx(_bpc(tmp_path / "cpu"), rel=1e-4)
    train(replace(cfg, device="cuda", max_steps=3), tmp_path / "split", progress=False)
    train(replace(cfg, device="cuda"), tmp_path / "split", resume=True, progress=False)
    assert _bpc(tmp_path / "split") == pytest.approx(_bpc(tmp_path / "gpu"), rel=1e-5)


def test_bf16_training_on_cuda_stays_near_fp32(tmp_path, corpus_file):
    cfg = replace(tiny_run(str(corpus_file)), device="cuda")
    fp32 = train(cfg, tmp_path / "fp32", progress=False)
    bf16 = train(replace(cfg, precision="bf16"), tmp_path / "bf16", progress=False)
    assert abs(bf16["valid_bpc"] - fp32["valid_bpc"]) < 0.05
