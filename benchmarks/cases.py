"""The registry of benchmark cases. Each case is a function of its parameters that returns one JSON-able record;
the runner executes each (case, parameters) pair in a fresh child process, which adds its peak resident memory.

Model FLOPs are counted analytically (``model_flops_per_token``): 2 FLOPs per multiply-add, forward + backward =
3x forward; matrix parameters (projections, FFN, persistent vectors, output head; not the embedding lookup, norms,
biases or the position table) cost 6 FLOPs per parameter per trained token; attention over the span costs, per
layer and token, 3 matmuls (q.k, q.p, probabilities.v) of span x d_model multiply-adds: 18 * span * d_model
trained. For pg9-allattn-8x256 that is 38.2 MFLOP per token.
"""

from __future__ import annotations

import importlib
import statistics
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F

from memtx.memory.xl_cache import XLCacheState
from memtx.models.config import ModelConfig
from memtx.models.generation import generate
from memtx.models.segments import segments
from memtx.models.transformer_lm import TransformerLM
from memtx.presets import PRESETS
from memtx.runtime import autocast, peak_gpu, resolve_device
from memtx.training.config import OptimConfig
from memtx.training.optim import build_optimizer, clip_gradients

CASES: dict[str, Callable[..., dict[str, Any]]] = {}


def case(fn: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    CASES[fn.__name__] = fn
    return fn


def model_config(name: str) -> ModelConfig:
    """Benchmark models: the PG-9 presets at d 256, and their d 512 versions (8 layers, 8 heads, N = d_ff ~ 512)."""
    base = {"allattn-256": "pg9-allattn-8x256", "transformer-256": "pg9-transformer-8x256"}
    if name in base:
        return PRESETS[base[name]][1].model
    if name == "allattn-512":
        return replace(PRESETS["pg9-allattn-8x256"][1].model, d_model=512, n_heads=8, n_persistent=512)
    if name == "transformer-512":
        return replace(PRESETS["pg9-transformer-8x256"][1].model, d_model=512, n_heads=8, d_ff=510)
    raise KeyError(name)


def model_flops_per_token(cfg: ModelConfig, training: bool = True) -> float:
    d, n, layers = cfg.d_model, cfg.n_persistent, cfg.n_layers
    per_layer = 4 * d * d + 2 * d * n + (2 * d * cfg.d_ff if cfg.block == "transformer" else 0)
    matrix_params = layers * per_layer + d * cfg.vocab_size
    forward = 2 * matrix_params + layers * 3 * 2 * cfg.span * d
    return 3 * forward if training else forward


CPU = torch.device("cpu")


def _sync(device: torch.device) -> None:
    """Wait for the device's queued work (GPU kernels run asynchronously; timings must include them)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_time(
    fn: Callable[[], Any], repeats: int, warmup: int = 2, device: torch.device = CPU
) -> tuple[float, list[float]]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def _memtx_train_step(cfg: ModelConfig, batch_size: int, segment_len: int, n_segments: int = 1,
                      device: str = "cpu", precision: str = "fp32") -> Callable[[], float]:  # fmt: skip
    """One Adam step per call over `n_segments` consecutive segments of a contiguous random-byte stream (memory
    carried through them with gradients, memtx's bptt_depth -1, and into the next call detached); loss = mean
    next-byte cross-entropy over the step's positions. On `device`, under `precision` (fp32 | bf16 autocast)."""
    torch.manual_seed(0)
    dev = resolve_device(device)
    model = TransformerLM(cfg).to(dev)
    params = list(model.parameters())
    optim_cfg = OptimConfig(name="adam", lr=1e-3, clip=1.0)
    opt = build_optimizer(params, optim_cfg)
    data = torch.randint(0, 256, (batch_size, 64 * segment_len + 1), device=dev)
    length = n_segments * segment_len
    box: dict[str, Any] = {"state": None, "pos": 0}

    def step() -> float:
        p = box["pos"] % (data.shape[1] - length - 1)
        x, y = data[:, p : p + length], data[:, p + 1 : p + length + 1]
        loss = 0.0
        with autocast(dev, precision):
            for columns, out in segments(model, x, box["state"], segment_len):
                logits = out.logits.flatten(0, 1).float()
                loss = loss + F.cross_entropy(logits, y[:, columns].flatten(), reduction="sum")
        loss = loss / y.numel()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        clip_gradients(params, optim_cfg)
        opt.step()
        box["state"], box["pos"] = out.state, p + length
        return loss.item()

    return step


def _alternate(
    sides: dict[str, Callable[[], Any]], rounds: int, steps: int, warmup: int = 2
) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """Run the sides in turn in this process: `warmup` untimed calls of each (interleaved), then `rounds` times
    `steps` timed calls of each side. Returns the call times per side and each side's last return value."""
    last: dict[str, Any] = {}
    for _ in range(warmup):  # caches filled, allocator settled
        for name, fn in sides.items():
            last[name] = fn()
    times: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(rounds):
        for name, fn in sides.items():
            for _ in range(steps):
                t0 = time.perf_counter()
                last[name] = fn()
                times[name].append(time.perf_counter() - t0)
    return times, last


@case
def gemm(size: int = 2048, repeats: int = 10, device: str = "cpu", precision: str = "fp32") -> dict[str, Any]:
    """Matrix-multiply rate (fp32, or bf16 with ``precision``): the ceiling model FLOP/s are compared with."""
    dev = resolve_device(device)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    a, b = torch.randn(size, size, device=dev, dtype=dtype), torch.randn(size, size, device=dev, dtype=dtype)
    t, _ = _median_time(lambda: torch.mm(a, b), repeats, device=dev)
    return {"size": size, "gflops": 2 * size**3 / t / 1e9, "device": str(dev), "precision": precision}


@case
def train(model: str = "allattn-256", batch_size: int = 16, segment_len: int = 256, repeats: int = 6,
          device: str = "cpu", precision: str = "fp32") -> dict[str, Any]:  # fmt: skip
    """Training tokens/s (median over steps, cache carried) and achieved model FLOP/s."""
    cfg = model_config(model)
    dev = resolve_device(device)
    step = _memtx_train_step(cfg, batch_size, segment_len, device=device, precision=precision)
    t, times = _median_time(step, repeats, device=dev)
    tokens = batch_size * segment_len
    flops = model_flops_per_token(cfg)
    return {"model": model, "tokens_per_s": tokens / t, "step_s": times, "model_flops_per_token": flops,
            "model_gflops": flops * tokens / t / 1e9, "device": str(dev), "precision": precision,
            "batch_size": batch_size, **peak_gpu(dev)}  # fmt: skip


@case
def generate_tokens(model: str = "allattn-256", batch_size: int = 1, prompt: int = 256, length: int = 512,
                    repeats: int = 3, compile: bool = False, device: str = "cpu") -> dict[str, Any]:  # fmt: skip
    """Generation tokens/s with the cache: the prompt read in segments, then one token per step (compiled with
    torch.compile when `compile`; compilation happens in the warm-up call and is not timed)."""
    torch.manual_seed(0)
    dev = resolve_device(device)
    lm = TransformerLM(model_config(model)).to(dev).eval()
    p = torch.randint(0, 256, (batch_size, prompt), device=dev)
    t, _ = _median_time(lambda: generate(lm, p, length, compile=compile), repeats, warmup=1, device=dev)
    return {"model": model, "batch_size": batch_size, "prompt": prompt, "length": length, "compile": compile,
            "tokens_per_s": batch_size * length / t, "device": str(dev), **peak_gpu(dev)}  # fmt: skip


@case
def context(span: int = 1024, segment_len: int = 512, batch_size: int = 1, repeats: int = 3,
            device: str = "cpu") -> dict[str, Any]:  # fmt: skip
    """Cost against context length for full attention: one segment read with a full cache of `span` states
    (each token attends to the `span` before it), forward only; time per token."""
    torch.manual_seed(0)
    dev = resolve_device(device)
    cfg = replace(model_config("allattn-256"), span=span)
    lm = TransformerLM(cfg).to(dev).eval()
    with torch.no_grad():  # a full cache of random states: the cost does not depend on the values
        state = XLCacheState(tuple(torch.randn(batch_size, span, cfg.d_model, device=dev) for _ in range(cfg.n_layers)))
        x = torch.randint(0, 256, (batch_size, segment_len), device=dev)
        t, _ = _median_time(lambda: lm(x, state), repeats, warmup=1, device=dev)
    return {"span": span, "segment_len": segment_len, "us_per_token": t / (batch_size * segment_len) * 1e6,
            "device": str(dev), **peak_gpu(dev)}  # fmt: skip


@case
def peer_train(peer: str = "x-transformers", rounds: int = 3, steps: int = 3) -> dict[str, Any]:
    """memtx vs a peer at the pg9-allattn-8x256 configuration, alternated in the same process: `rounds` times,
    `steps` steps of each; tokens/s are medians over all timed steps."""
    from benchmarks.peers import xtransformers as xt

    if not xt.available():
        return {"skipped": "x-transformers is not installed (pip install torch==2.13.0 -e '.[peers]')"}
    ours = _memtx_train_step(model_config("allattn-256"), 16, 256)
    torch.manual_seed(0)
    peer_model = xt.build_model()
    theirs = xt.train_step_fn(peer_model, batch_size=16, segment_len=256)
    times, _ = _alternate({"memtx": ours, peer: theirs}, rounds, steps)
    tps = {k: 16 * 256 / statistics.median(v) for k, v in times.items()}
    return {"peer": peer, "peer_config": xt.describe(peer_model), "tokens_per_s": tps,
            "ratio_memtx_over_peer": tps["memtx"] / tps[peer], "step_s": times}  # fmt: skip


@case
def peer_generate(peer: str = "x-transformers", batch_size: int = 1, prompt: int = 256, length: int = 256,
                  rounds: int = 3, compile: bool = False) -> dict[str, Any]:  # fmt: skip
    """Batch-1 generation: memtx's generate (its per-token step compiled when `compile`; compiled during the
    untimed warm-up) vs XLAutoregressiveWrapper.generate, alternated, same prompt/length."""
    from benchmarks.peers import xtransformers as xt

    if not xt.available():
        return {"skipped": "x-transformers is not installed (pip install torch==2.13.0 -e '.[peers]')"}
    torch.manual_seed(0)
    lm = TransformerLM(model_config("allattn-256")).eval()
    p = torch.randint(0, 256, (batch_size, prompt))
    ours = lambda: generate(lm, p, length, compile=compile)  # noqa: E731
    theirs = xt.generate_fn(xt.build_model(), prompt_len=prompt, length=length, batch_size=batch_size)
    times: dict[str, list[float]] = {"memtx": [], peer: []}
    ours(), theirs()
    for _ in range(rounds):
        for name, fn in (("memtx", ours), (peer, theirs)):
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    tps = {k: batch_size * length / statistics.median(v) for k, v in times.items()}
    return {"peer": peer, "compile": compile, "tokens_per_s": tps, "ratio_memtx_over_peer": tps["memtx"] / tps[peer],
            "run_s": times}  # fmt: skip


RECURRENT_PEERS = {"infini-transformer-pytorch": "benchmarks.peers.infini", "titans-pytorch": "benchmarks.peers.titans"}
"""Peers of memtx's recurrent pg9-allattn-rmt-8x256 model: distribution name -> module (build_model, train_step_fn,
describe, available; each module's docstring says what is matched)."""


@case
def peer_recurrent_train(peer: str = "infini-transformer-pytorch", rounds: int = 3, steps: int = 3,
                         warmup: int = 2) -> dict[str, Any]:  # fmt: skip
    """memtx's pg9-allattn-rmt-8x256 training step (batch 8, 2 segments of 256 with gradients through the 16 memory
    tokens) vs a recurrent-memory peer's at its matched configuration, alternated in the same process: `rounds`
    times, `steps` steps of each; tokens/s = 8 * 2 * 256 / the median step time."""
    if peer not in RECURRENT_PEERS:
        raise KeyError(f"unknown recurrent peer {peer!r}: one of {sorted(RECURRENT_PEERS)}")
    module = importlib.import_module(RECURRENT_PEERS[peer])
    if not module.available():
        return {"peer": peer, "skipped": f"{peer} is not installed (pip install torch==2.13.0 -e '.[peers]')"}
    preset = "pg9-allattn-rmt-8x256"
    run = PRESETS[preset][1]
    batch_size, segment_len, n_segments = run.batch_size, run.segment_len, run.unroll
    ours = _memtx_train_step(run.model, batch_size, segment_len, n_segments)
    torch.manual_seed(0)
    peer_model = module.build_model()
    theirs = module.train_step_fn(peer_model, batch_size, segment_len, n_segments)
    times, last_loss = _alternate({"memtx": ours, peer: theirs}, rounds, steps, warmup)
    tokens = batch_size * segment_len * n_segments
    tps = {k: tokens / statistics.median(v) for k, v in times.items()}
    memtx_params = sum(p.numel() for p in TransformerLM(run.model).parameters())
    return {"peer": peer, "memtx_preset": preset, "memtx_parameters": memtx_params,
            "peer_config": module.describe(peer_model), "batch_size": batch_size, "segment_len": segment_len,
            "segments": n_segments, "tokens_per_s": tps, "ratio_memtx_over_peer": tps["memtx"] / tps[peer],
            "step_s": times, "last_loss": last_loss}  # fmt: skip
