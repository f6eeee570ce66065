"""Transformer-XL-style cache (Dai et al. 2019) as used by the All-attention network.

Each layer keeps its *input* hidden states of the last C positions, detached, and re-projects keys/values from
them at the next segment. Gradients stop at the segment boundary. The state is a value: ``forward`` returns the
next state and never stores it on a module.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class XLCacheState:
    """hidden[l] is (B, C_l, D): layer l's detached input states of the last C_l <= cache length positions."""

    hidden: tuple[Tensor, ...]
    PREFIX = "xl_cache."

    def detach(self) -> XLCacheState:
        return XLCacheState(tuple(h.detach() for h in self.hidden))

    def to_tensors(self) -> dict[str, Tensor]:
        """Flat, contiguous tensors for safetensors."""
        return {f"xl_cache.{i}": h.contiguous() for i, h in enumerate(self.hidden)}

    @staticmethod
    def from_tensors(tensors: dict[str, Tensor]) -> XLCacheState:
        n = len([k for k in tensors if k.startswith("xl_cache.")])
        return XLCacheState(tuple(tensors[f"xl_cache.{i}"] for i in range(n)))


class XLCache(nn.Module):
    """Each layer attends over [cache ; segment]; the cache holds the last ``length`` input states of the layer
    (0 = the layer's attention span, trimmed to the learned span with adaptive span)."""

    def __init__(self, length: int = 0) -> None:
        super().__init__()
        self.length = length

    def run(
        self, blocks: nn.ModuleList, h: Tensor, state: XLCacheState | None, pos: Tensor
    ) -> tuple[Tensor, XLCacheState]:
        caches = state.hidden if state is not None else (None,) * len(blocks)
        next_caches = []
        for block, cache in zip(blocks, caches, strict=True):
            length = min(self.length, block.cache_len()) if self.length else block.cache_len()
            next_caches.append(extend(cache, h, length))
            h = block(h, cache, pos)
        return h, XLCacheState(tuple(next_caches))


def extend(cache: Tensor | None, h: Tensor, length: int) -> Tensor:
    """Next cache of one layer: the last `length` positions of [cache ; h], detached. (B, <=length, D).

    A contiguous copy, not a view: it does not keep the whole concatenation alive, and it is a plain tensor for
    wrappers (FSDP) that hook module outputs."""
    keep = min(length - h.shape[1], cache.shape[1]) if cache is not None else 0  # cached positions that stay
    if keep <= 0:
        return h[:, max(0, h.shape[1] - length) :].detach().clone(memory_format=torch.contiguous_format)
    return torch.cat([cache[:, cache.shape[1] - keep :], h.detach()], dim=1)


@dataclass(frozen=True)
class KVCacheState:
    """Inference twin of XLCacheState: per layer, key and value buffers (B, H, capacity, Dh) whose first
    ``lengths[l]`` positions hold the newest projected states, oldest first. Generating one token costs one
    projection per layer and a write into the buffer (``append_kv``), with no copy of the window.

    ``prefixes[l]`` is the fixed (H, N, Dh) key/value prefix every position of layer l also attends over (the
    persistent vectors, scaled once instead of per token), or None.

    Appending writes in place past ``lengths[l]``: the state passed in keeps seeing what it saw, but two states
    continued from the same one would write to the same slots, so continue only one of them."""

    keys: tuple[Tensor, ...]
    values: tuple[Tensor, ...]
    lengths: tuple[int, ...]
    prefixes: tuple[tuple[Tensor, Tensor] | None, ...]


def kv_buffers(k: Tensor, v: Tensor, capacity: int) -> tuple[Tensor, Tensor, int]:
    """Buffers of `capacity` positions holding k, v (B, H, C, Dh) at the front, and their length C."""
    c = k.shape[2]
    k_buf, v_buf = k.new_empty(*k.shape[:2], capacity, k.shape[3]), v.new_empty(*v.shape[:2], capacity, v.shape[3])
    k_buf[:, :, :c], v_buf[:, :, :c] = k, v
    return k_buf, v_buf, c


def append_kv(k_buf: Tensor, v_buf: Tensor, length: int, k: Tensor, v: Tensor, keep: int) -> tuple[Tensor, Tensor, int]:
    """Write one position's k, v (B, H, 1, Dh) after the `length` filled positions. A full buffer first moves its
    newest `keep` positions to the front of a fresh one (every capacity - keep steps: amortised O(1) per token)."""
    if length == k_buf.shape[2]:
        k_buf, v_buf, length = kv_buffers(k_buf[:, :, length - keep :], v_buf[:, :, length - keep :], k_buf.shape[2])
    k_buf[:, :, length : length + 1] = k
    v_buf[:, :, length : length + 1] = v
    return k_buf, v_buf, length + 1
