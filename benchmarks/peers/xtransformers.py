"""x-transformers peer of memtx's ``pg9-allattn-8x256`` All-attention model, for side-by-side speed runs.

A runner can alternate these calls with memtx's own step in one process:

    from benchmarks.peers import xtransformers as xt
    if xt.available():
        model = xt.build_model()
        step = xt.train_step_fn(model, batch_size=16, segment_len=256)   # one Adam step per call
        gen = xt.generate_fn(model, prompt_len=256, length=256)         # tokens/s = batch * length / time
        info = xt.describe(model)                                      # parameter count + exact kwargs

Depends on torch and x_transformers only (checked against x-transformers 2.31.10; ``pip install x-transformers``,
which pulls einops, einx, loguru, torch-einops-utils but keeps the installed torch).

How the configuration was matched (memtx -> x-transformers):

* byte vocabulary 256, 8 layers, d_model 256, 4 heads of 64: ``TransformerWrapper(num_tokens=256)``,
  ``Decoder(dim=256, depth=8, heads=4, attn_dim_head=64)``.
* attention-only layers (no feed-forward sublayer): ``only_attn=True`` (drops every 'f' from the layer plan, so the
  layer types are ('a',) * 8; ``custom_layers=('a',) * 8`` would build the same thing).
* N=256 persistent key/value vectors per head and per layer: ``attn_num_mem_kv=256`` (``mem_k``/``mem_v`` of shape
  (heads, N, d_head) in every Attention, prepended to the keys/values; never masked, no positional bias on them).
* post-norm: ``pre_norm=False`` (h <- LayerNorm(h + Attn(h)); no final norm, as in memtx).
* Transformer-XL cache of 512 states with segment 256: ``max_seq_len=256, max_mem_len=512``; ``model(x, mems=mems,
  return_mems=True)`` returns ``(logits, new_mems)`` where ``new_mems`` is, per layer, the layer *inputs* of the
  previous 512 positions (cat(old, new)[-512:], detached) - the same hidden-state cache memtx keeps.
* span 512 (each token sees itself and the 511 before it): ``attn_max_attend_past=511`` masks the older cached keys.
* relative positions: ``rel_pos_bias=True`` (T5 bucketed bias, one table shared by all layers) with
  ``rel_pos_num_buckets=rel_pos_max_distance=2*span``, so every distance 0..span-1 gets its own learned per-head
  scalar (T5's "exact" half of the buckets). It is the cheapest learned per-distance scheme in x-transformers;
  ``dynamic_pos_bias`` (an MLP over distances) is costlier and no closer; ``use_rel_proj_pos_bias`` miscounts the
  keys when ``num_mem_kv > 0`` in this version. Flash/SDPA attention cannot be combined with ``rel_pos_bias``, so
  x-transformers runs its einsum attention path here.
* training step as memtx's pg9 preset: Adam(lr=1e-3), global grad-norm clip 1.0, batch 16, segment 256, mems carried
  between steps; generation with ``XLAutoregressiveWrapper.generate`` at temperature 1 without top-k (memtx's
  ``generate`` defaults), not x-transformers' default top-k filter.

What could not be matched exactly:

* relative positions: memtx adds a content term q . p_d with a learned (d_head, span) table shared by the layers
  (Sukhbaatar et al.); x-transformers' T5 bias is a per-head scalar per distance, independent of the query.
  Parameters: 4 * 1024 = 4,096 here versus 64 * 512 = 32,768 in memtx; compute: a gathered bias versus an extra
  (B*H, 256, 64) x (64, 512) matmul per layer in memtx.
* attention work: x-transformers scores each query against all 256 + 512 current/cached keys and then masks the ones
  beyond the span, while memtx attends a window of exactly ``span`` keys per query; both add the 256 persistent
  vectors. The mask keeps the maths equal, the FLOPs are not.
* persistent memory parametrisation: x-transformers stores ``mem_k``/``mem_v`` as plain randn (std 1); memtx stores
  key/sqrt(d_head) and value/sqrt(N) and scales them back at use. The forward values at init have the same
  distribution, but the parametrisation (hence Adam's effective step on them) differs; speed is unaffected.
* norms and biases: x-transformers' LayerNorm has a gamma only (with a unit offset), its logits projection has no
  bias; memtx uses nn.LayerNorm (weight and bias) and a biased head.
* parameter count: 3,282,944 versus memtx's 3,313,920 (-30,976 = -28,672 position table - 8 * 256 LayerNorm biases
  - 256 head bias).
* generation: memtx keeps a sliding window of projected keys/values (constant cost per token); x-transformers'
  XL generate keeps a key/value cache within the current 256-token segment plus the hidden-state mems, and at each
  segment boundary re-encodes the last full segment, so its per-token cost varies along the sequence.
* the first training step has no mems (shorter attention); steady state (512 cached states) is reached from the
  second step, so time after at least 2 warm-up calls.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.peers import adam_stepper, describe_peer, installed, random_bytes

MEMTX_PRESET = "pg9-allattn-8x256"
MEMTX_PARAMS = 3_313_920
"""Parameter count of memtx's pg9-allattn-8x256 model, for the comparison in ``describe``."""

_KWARGS_ATTR = "_memtx_peer_kwargs"


def available() -> bool:
    """True when x_transformers can be imported (the peer is optional)."""
    return installed("x_transformers")


def model_kwargs(
    n_layers: int = 8,
    d_model: int = 256,
    n_heads: int = 4,
    n_persistent: int = 256,
    span: int = 512,
    segment_len: int = 256,
    vocab: int = 256,
    attention_only: bool = True,
) -> dict[str, dict[str, Any]]:
    """The exact x-transformers keyword arguments ``build_model`` uses, as plain data."""
    if d_model % n_heads:
        raise ValueError(f"n_heads={n_heads} must divide d_model={d_model}")
    decoder: dict[str, Any] = dict(
        dim=d_model,
        depth=n_layers,
        heads=n_heads,
        attn_dim_head=d_model // n_heads,
        attn_num_mem_kv=n_persistent,
        attn_max_attend_past=span - 1,
        only_attn=attention_only,
        rel_pos_bias=True,
        rel_pos_num_buckets=2 * span,
        rel_pos_max_distance=2 * span,
        pre_norm=False,
    )
    wrapper: dict[str, Any] = dict(num_tokens=vocab, max_seq_len=segment_len, max_mem_len=span)
    return {"TransformerWrapper": wrapper, "Decoder": decoder}


def build_model(**config: Any) -> nn.Module:
    """The closest x-transformers ``TransformerWrapper`` to memtx's All-attention LM; ``config`` takes the keywords
    of ``model_kwargs`` (defaults: pg9-allattn-8x256)."""
    from x_transformers import Decoder, TransformerWrapper

    kw = model_kwargs(**config)
    model = TransformerWrapper(**kw["TransformerWrapper"], attn_layers=Decoder(**kw["Decoder"]))
    setattr(model, _KWARGS_ATTR, kw)
    return model


def describe(model: nn.Module) -> dict[str, Any]:
    """Parameter count (and its difference to memtx's preset) and the kwargs the model was built with."""
    attn = getattr(model, "attn_layers", None)
    return {
        **describe_peer(model, "x-transformers", MEMTX_PRESET, MEMTX_PARAMS, getattr(model, _KWARGS_ATTR, None)),
        "layer_types": "".join(attn.layer_types) if attn is not None else None,
        "train_step": "Adam(lr=1e-3), clip_grad_norm 1.0, XL mems carried between steps",
        "generate": "XLAutoregressiveWrapper.generate, temperature 1, no top-k",
    }


def train_step_fn(
    model: nn.Module,
    batch_size: int,
    segment_len: int,
    *,
    lr: float = 1e-3,
    grad_clip: float = 1.0,
    n_segments: int = 8,
    seed: int = 0,
) -> Callable[[], float]:
    """A zero-argument function running ONE training step; returns the loss.

    The data is a fixed stream of random bytes (batch_size rows of n_segments * segment_len + 1 bytes, made here,
    outside the step) read segment after segment, wrapping around; the XL mems of one step are passed to the next
    (detached by x-transformers), like real Transformer-XL training."""
    stream = random_bytes(model, batch_size, n_segments * segment_len + 1, model.num_tokens, seed)
    update = adam_stepper(model, lr, grad_clip)
    state: dict[str, Any] = {"mems": None, "seg": 0}

    def step() -> float:
        model.train()
        start = state["seg"] * segment_len
        x = stream[:, start : start + segment_len]
        y = stream[:, start + 1 : start + segment_len + 1]
        logits, mems = model(x, mems=state["mems"], return_mems=True)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        update(loss)
        state["mems"] = mems
        state["seg"] = (state["seg"] + 1) % n_segments
        return float(loss.detach())

    return step


def _no_filter(logits: torch.Tensor, **_: Any) -> torch.Tensor:
    return logits


def generate_fn(
    model: nn.Module,
    prompt_len: int,
    length: int,
    batch_size: int = 1,
    *,
    temperature: float = 1.0,
    seed: int = 0,
) -> Callable[[], torch.Tensor]:
    """A zero-argument function sampling ``length`` new tokens after a fixed random prompt of ``prompt_len`` bytes
    with ``XLAutoregressiveWrapper.generate`` (so tokens/s = batch_size * length / time). Returns (batch, length)."""
    from x_transformers import XLAutoregressiveWrapper

    device = next(model.parameters()).device
    wrapper = XLAutoregressiveWrapper(model)
    gen = torch.Generator().manual_seed(seed)
    prompt = torch.randint(0, model.num_tokens, (batch_size, prompt_len), generator=gen).to(device)

    def run() -> torch.Tensor:
        return wrapper.generate(prompt, length, temperature=temperature, filter_logits_fn=_no_filter)

    return run
