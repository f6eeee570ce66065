"""titans-pytorch peer of memtx's ``pg9-allattn-rmt-8x256`` recurrent model, for side-by-side speed runs.

A runner alternates these calls with memtx's own step in one process (``benchmarks/cases.py:peer_recurrent_train``):

    from benchmarks.peers import titans
    if titans.available():
        model = titans.build_model()
        step = titans.train_step_fn(model, batch_size=8, segment_len=256, segments=2)   # one Adam step per call
        info = titans.describe(model)                                                  # parameter count + kwargs

Depends on torch and titans_pytorch (checked against titans-pytorch 0.5.5; ``pip install torch==2.13.0
titans-pytorch==0.5.5``, which pulls assoc-scan, accelerated-scan, axial-positional-embedding, einx,
hyper-connections, ninja, rotary-embedding-torch, tensordict and x-transformers, all CPU-installable; the
accelerated (Triton) scan is not used: ``use_accelerated_scan`` stays False).

The peer (Behrouz et al. 2024, "Titans: Learning to Memorize at Test Time", arXiv 2501.00663), its
Memory-as-Context transformer ``MemoryAsContextTransformer``: the sequence is cut into segments; each segment's
attention window is [256 tokens ; 16 learned long-term memory tokens] (block-diagonal windows, causal inside, rotary
positions, optional persistent key/value vectors), and a neural memory (a small MLP per head whose weights are the
memory) is written by gradient descent on an associative loss, chunk by chunk, as the sequence goes; each position
reads it as stored by the chunks before. One forward call takes the whole multi-segment sequence; the memory is
carried between its segments inside the call, with gradients through the writes.

Upstream bug worked around (titans-pytorch issue #64, cause of #28, open as of 0.5.5): with
``per_head_learned_parameters=True`` (default) and ``heads > 1``, each neural memory's per-head initial weights
(``memory_model_parameters``) are ``einops.repeat`` views with stride 0, so every head aliases one storage and any
optimiser step raises "more than one element of the written-to tensor refers to a single memory location".
``build_model`` replaces each of them by a contiguous copy (same values, same shapes, same parameter count): the
per-head weights the option asks for. With ``heads=1`` the bug does not arise.

What is matched (memtx pg9-allattn-rmt-8x256: 8 layers, d_model 256, 4 heads of 64, byte vocabulary, All-attention
layers with N=256 persistent vectors and no FFN, 16 RMT memory tokens, segment 256, batch 8, 2 segments per step
with gradients through the memory; 3,318,016 parameters):

* ``MemoryAsContextTransformer(num_tokens=256, dim=256, depth=8, heads=4, dim_head=64, segment_len=256,
  num_longterm_mem_tokens=16, ...)``: vocabulary, depth, width, heads, head width, segment length and 16 memory
  tokens per segment.
* batch 8, 2 segments per step: one ``model(x)`` over 512 bytes (the peer's training forward), gradients through
  the neural-memory writes of segment 1 into segment 2 (memtx's ``bptt_depth -1``).
* loss: next-byte cross-entropy, mean over the 512 positions (the peer's ``return_loss=True`` computes the same).
* optimiser as the preset: Adam(lr 1e-3, betas (0.9, 0.999)), global grad-norm clip 1.0.
* residual: a plain residual stream like memtx's and the paper's (``num_residual_streams=1``); the peer's default
  of 4 hyper-connection streams (a lucidrains addition: a widened residual mixed around every sublayer) would add
  31,947 parameters (3,423,299 in all, +3.2%) and the mixing's compute.
* parameter count: 3,391,352, +73,336 (+2.2%). The peer's fixed parts at this shape already take 3,032,092: the
  continuous axial position MLP (790,016, computed once per position, not per sample), embeddings and head
  (131,072), the 8 attention layers (2,106,652 with their value-residual mixing), the long-term memory tokens
  (4,096) and the final norm. The rest is chosen to fit:

  - neural memory in one layer, layer 2 (the first of ``(2, 4, 6)`` in the author's ``train_mac.py``), with the
    author's memory model there: ``MemoryMLP(dim=64, depth=2)`` (64 -> 128 -> 64, GELU) per head, 4 heads of 64,
    other ``NeuralMemory`` options at their defaults (momentum, learned step size/decay, chunk = the attention
    window of 272 positions, one write per segment like RMT's one memory update per segment): 349,004
    parameters, of which 16,448 are the template ``memory_model`` weights the per-head copies are made from
    (counted by the peer, unused in the forward);
  - no persistent vectors (``num_persist_mem_tokens=0``; 131,072 parameters per layer at memtx's N=256);
  - feed-forward width 1 (``ff_mult`` giving ``int(dim * mult * 2 / 3) == 1``; the peer cannot drop the FFN,
    memtx's layers have none): 1,282 parameters per layer.

  Other choices, all with hyper-connections off and FFN width 1: neural memory in ``(2, 4, 6)`` 4,089,360 (+23%);
  N=256 persistent vectors and neural memory in layer 2: 4,439,928 (+34%); no neural memory and N=69: 3,324,972
  (+0.2%, but no Titans memory at all).

What is not matched:

* the memory: memtx passes 16 memory tokens (B, 16, 256), read before and written after the segment through all
  8 layers; the peer carries information between segments only through the neural memory of layer 2 (per head
  the 64x128 and 128x64 MLP weights plus a LayerNorm gain and their momentum, per sample), and its 16 long-term
  memory tokens are learned constants appended after each segment (the segment's tokens cannot attend to them; the
  last segment of the sequence has none), so they feed the neural memory, not the attention of later segments.
* the memory is not carried from one training step to the next (the peer's training forward takes no incoming
  memory state; its cache is for one-token decoding), while memtx carries its memory tokens, detached, between
  steps over a contiguous stream. Compute per step is unaffected.
* attention and layers: memtx's post-norm All-attention layers (256 persistent vectors per head, learned
  content-position term, LayerNorm with bias, no FFN) versus the peer's pre-norm (RMSNorm) attention with rotary
  positions, value-residual mixing from layer 2 on, a width-1 GEGLU feed-forward and a final RMSNorm; the peer's
  output head has no bias, memtx's has. Absolute positions: the peer adds an axial (segment, offset) embedding.
* the peer runs its CPU path (``Attend`` without FlexAttention, which needs CUDA), the neural memory's per-sample
  gradients through ``torch.func.vmap(grad(...))`` and its associative scan without the Triton kernel.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch.nn.functional as F
from torch import nn

from benchmarks.peers import adam_stepper, describe_peer, installed, random_bytes
from benchmarks.peers.rmt_pytorch import ff_mult_for

PEER = "titans-pytorch"
MEMTX_PRESET = "pg9-allattn-rmt-8x256"
MEMTX_PARAMS = 3_318_016
"""Parameter count of memtx's pg9-allattn-rmt-8x256 model, for the comparison in ``describe``."""

_KWARGS_ATTR = "_memtx_peer_kwargs"


def available() -> bool:
    """True when titans_pytorch can be imported (the peer is optional)."""
    return installed("titans_pytorch")


def model_kwargs(
    n_layers: int = 8,
    d_model: int = 256,
    n_heads: int = 4,
    segment_len: int = 256,
    mem_tokens: int = 16,
    vocab: int = 256,
    n_persistent: int = 0,
    ff_inner: int = 1,
    neural_memory_layers: tuple[int, ...] = (2,),
    memory_dim: int = 64,
    memory_depth: int = 2,
    residual_streams: int = 1,
) -> dict[str, Any]:
    """The exact ``MemoryAsContextTransformer`` keyword arguments ``build_model`` uses, as plain data (the memory
    model as ``MemoryMLP`` keywords under ``neural_memory_model``)."""
    if d_model % n_heads:
        raise ValueError(f"n_heads={n_heads} must divide d_model={d_model}")
    return dict(
        num_tokens=vocab,
        dim=d_model,
        depth=n_layers,
        heads=n_heads,
        dim_head=d_model // n_heads,
        segment_len=segment_len,
        num_longterm_mem_tokens=mem_tokens,
        num_persist_mem_tokens=n_persistent,
        ff_mult=ff_mult_for(ff_inner, d_model),
        num_residual_streams=residual_streams,
        neural_memory_layers=tuple(neural_memory_layers),
        neural_memory_model=dict(dim=memory_dim, depth=memory_depth),
        neural_memory_kwargs=dict(dim_head=memory_dim, heads=d_model // memory_dim),
    )


def _unalias_per_head_parameters(model: nn.Module) -> int:
    """Replace every stride-0 per-head memory parameter by a contiguous copy (titans-pytorch issue #64); the count
    of parameters replaced."""
    replaced = 0
    for module in model.modules():
        params = getattr(module, "memory_model_parameters", None)
        if not isinstance(params, nn.ParameterList):
            continue
        for i, p in enumerate(params):
            if 0 in p.stride():
                params[i] = nn.Parameter(p.detach().clone(), requires_grad=p.requires_grad)
                replaced += 1
    return replaced


def build_model(**config: Any) -> nn.Module:
    """The ``MemoryAsContextTransformer`` matched to memtx's pg9-allattn-rmt-8x256 model; ``config`` takes the
    keywords of ``model_kwargs``."""
    from titans_pytorch import MemoryAsContextTransformer, MemoryMLP

    kw = model_kwargs(**config)
    model = MemoryAsContextTransformer(**{**kw, "neural_memory_model": MemoryMLP(**kw["neural_memory_model"])})
    _unalias_per_head_parameters(model)
    setattr(model, _KWARGS_ATTR, kw)
    return model


def describe(model: nn.Module) -> dict[str, Any]:
    """Parameter count (and its difference to memtx's preset) and the kwargs the model was built with."""
    return {
        **describe_peer(model, PEER, MEMTX_PRESET, MEMTX_PARAMS, getattr(model, _KWARGS_ATTR, None)),
        "ff_inner": model.layers[0][6][-1].in_features,
        "memory": "neural memory (per-head MLP weights written by gradient steps) in the listed layers, "
        "long-term memory tokens per segment; not carried between training steps",
        "workaround": "per-head memory parameters copied out of their stride-0 views (titans-pytorch issue #64)",
        "train_step": "one forward over all segments; Adam(lr=1e-3), clip_grad_norm 1.0",
    }


def train_step_fn(
    model: nn.Module,
    batch_size: int,
    segment_len: int,
    segments: int,
    *,
    lr: float = 1e-3,
    grad_clip: float = 1.0,
    seed: int = 0,
) -> Callable[[], float]:
    """A zero-argument function running ONE training step over ``segments`` consecutive segments; returns the loss.

    The data is a fixed stream of random bytes (batch_size rows of 64 segments + 1 bytes, made here, outside the
    step) read window after window, wrapping around. The model's own segment length is the one it was built with;
    ``segment_len`` only sets the window (``segments * segment_len`` bytes per row)."""
    if model.segment_len != segment_len:
        raise ValueError(f"the model was built with segment_len={model.segment_len}, not {segment_len}")
    stream = random_bytes(model, batch_size, 64 * segment_len + 1, model.to_logits.out_features, seed)
    length = segments * segment_len
    update = adam_stepper(model, lr, grad_clip)
    state = {"pos": 0}

    def step() -> float:
        model.train()
        p = state["pos"] % (stream.shape[1] - length - 1)
        x, y = stream[:, p : p + length], stream[:, p + 1 : p + length + 1]
        logits = model(x)
        loss = F.cross_entropy(logits.flatten(0, 1), y.flatten())
        update(loss)
        state["pos"] = p + length
        return float(loss.detach())

    return step
