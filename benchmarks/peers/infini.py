"""infini-transformer-pytorch peer of memtx's ``pg9-allattn-rmt-8x256`` recurrent model, for side-by-side speed runs.

A runner alternates these calls with memtx's own step in one process (``benchmarks/cases.py:peer_recurrent_train``):

    from benchmarks.peers import infini
    if infini.available():
        model = infini.build_model()
        step = infini.train_step_fn(model, batch_size=8, segment_len=256, segments=2)   # one Adam step per call
        info = infini.describe(model)                                                  # parameter count + kwargs

Depends on torch and infini_transformer_pytorch only (checked against infini-transformer-pytorch 0.2.1; ``pip install
torch==2.13.0 infini-transformer-pytorch==0.2.1``, which pulls einops and rotary-embedding-torch and keeps the torch
build named).

The peer (Munkhdalai et al. 2024, "Leave No Context Behind", arXiv 2404.07143): every layer attends causally within
its segment and also reads a compressive memory, a linear-attention key/value matrix per head,
``kv_mem (B, H, Dh, Dh)`` plus a normaliser ``k_norm (B, H, Dh)``; a learned per-head sigmoid gate mixes the two
reads; after the segment its keys/values are added to the memory. ``model(x, past_memories,
return_new_memories=True)`` returns ``(logits, None, new_memories)``.

What is matched (memtx pg9-allattn-rmt-8x256: 8 layers, d_model 256, 4 heads, byte vocabulary, All-attention layers
with N=256 persistent vectors and no FFN, 16 RMT memory tokens, segment 256, batch 8, 2 segments per step with
gradients through the memory; 3,318,016 parameters):

* ``InfiniTransformer(num_tokens=256, dim=256, depth=8, heads=4, dim_head=64, ff_mult=...)``: the same vocabulary,
  depth, width, heads and head width.
* segment 256, batch 8, 2 segments per training step: each segment runs as ``model(segment, memories,
  return_new_memories=True)``, the memories it returns are the next segment's, never detached within the step
  (gradients cross the memory hand-over, memtx's ``bptt_depth -1``); between steps the memories are carried
  detached, as memtx carries its memory state from one step to the next over a contiguous stream.
* loss: next-byte cross-entropy, mean over all 2 x 256 positions of the step (memtx's ``StepLoss``); the
  peer's ``InfiniTransformerWrapper`` is not used (it starts from empty memory on every call, detaches every 2
  segments and calls backward itself).
* optimiser as the preset: Adam(lr 1e-3, betas (0.9, 0.999)), global grad-norm clip 1.0.
* parameter count: the peer has no persistent vectors, so its layers keep the feed-forward sublayer (GEGLU,
  ``FeedForward``); its hidden width is the free knob (``ff_inner``, default 176, the width closest to memtx's
  count): 3,319,328 parameters, +1,312 (+0.04%); width 175 gives 3,313,168 (-4,848). ``ff_mult`` is derived from
  it (the peer computes ``int(mult * dim * 2 / 3)``).

What is not matched:

* the memory: memtx passes 16 memory tokens (B, 16, 256), read before and written after the segment through the
  same layers (4,096 floats per sample); the peer keeps, per layer, a linear-attention matrix (4 x 64 x 64 plus a
  4 x 64 normaliser: 16,640 floats per layer, 133,120 per sample) that no token attends to as a key: queries read
  it through ``elu + 1`` features. The first step has no memory to read (the gated read is skipped), so time after
  at least 1 warm-up call.
* attention: memtx scores each of the 16 + 256 + 16 positions against the 256 persistent vectors and the causal
  prefix, with a learned content-position term (Sukhbaatar et al.); the peer scores the 256 positions causally
  with rotary positions, then does the memory read (2 extra (256 x 64) x (64 x 64) products per head and layer).
* layers: memtx's are post-norm All-attention layers (LayerNorm with bias, no FFN); the peer's are pre-norm
  (RMSNorm) attention + GEGLU feed-forward with a final RMSNorm; attention projections without bias in both.
* einsum attention on the peer's side (it has no SDPA path); memtx runs its own attention kernels.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch.nn.functional as F
from torch import nn

from benchmarks.peers import adam_stepper, describe_peer, installed, random_bytes
from benchmarks.peers.rmt_pytorch import ff_mult_for

PEER = "infini-transformer-pytorch"
MEMTX_PRESET = "pg9-allattn-rmt-8x256"
MEMTX_PARAMS = 3_318_016
"""Parameter count of memtx's pg9-allattn-rmt-8x256 model, for the comparison in ``describe``."""

_KWARGS_ATTR = "_memtx_peer_kwargs"


def available() -> bool:
    """True when infini_transformer_pytorch can be imported (the peer is optional)."""
    return installed("infini_transformer_pytorch")


def model_kwargs(
    n_layers: int = 8, d_model: int = 256, n_heads: int = 4, vocab: int = 256, ff_inner: int = 176
) -> dict[str, Any]:
    """The exact ``InfiniTransformer`` keyword arguments ``build_model`` uses, as plain data."""
    if d_model % n_heads:
        raise ValueError(f"n_heads={n_heads} must divide d_model={d_model}")
    return dict(
        num_tokens=vocab,
        dim=d_model,
        depth=n_layers,
        heads=n_heads,
        dim_head=d_model // n_heads,
        ff_mult=ff_mult_for(ff_inner, d_model),
    )


def build_model(**config: Any) -> nn.Module:
    """The closest ``InfiniTransformer`` to memtx's pg9-allattn-rmt-8x256 model; ``config`` takes the keywords of
    ``model_kwargs``."""
    from infini_transformer_pytorch import InfiniTransformer

    kw = model_kwargs(**config)
    model = InfiniTransformer(**kw)
    setattr(model, _KWARGS_ATTR, kw)
    return model


def describe(model: nn.Module) -> dict[str, Any]:
    """Parameter count (and its difference to memtx's preset) and the kwargs the model was built with."""
    return {
        **describe_peer(model, PEER, MEMTX_PRESET, MEMTX_PARAMS, getattr(model, _KWARGS_ATTR, None)),
        "ff_inner": model.layers[0][1].proj_out.in_features,
        "memory": "per layer: linear-attention kv matrix (heads, d_head, d_head) + normaliser, gated read",
        "train_step": "segments carried with gradients through the memories, detached between steps; "
        "Adam(lr=1e-3), clip_grad_norm 1.0",
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
    step) read window after window, wrapping around, so the memories carried from one step to the next belong to
    the text that precedes the window."""
    from infini_transformer_pytorch.infini_transformer import Memories

    stream = random_bytes(model, batch_size, 64 * segment_len + 1, model.to_logits.out_features, seed)
    length = segments * segment_len
    update = adam_stepper(model, lr, grad_clip)
    state: dict[str, Any] = {"memories": None, "pos": 0}

    def step() -> float:
        model.train()
        p = state["pos"] % (stream.shape[1] - length - 1)
        memories, loss = state["memories"], 0.0
        for i in range(segments):
            x = stream[:, p + i * segment_len : p + (i + 1) * segment_len]
            y = stream[:, p + i * segment_len + 1 : p + (i + 1) * segment_len + 1]
            logits, _, memories = model(x, past_memories=memories, return_new_memories=True)
            loss = loss + F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum")
        loss = loss / (batch_size * length)
        update(loss)
        state["memories"] = [Memories(m.kv_mem.detach(), m.k_norm.detach()) for m in memories]
        state["pos"] = p + length
        return float(loss.detach())

    return step
