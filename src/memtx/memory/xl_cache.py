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
    full = h if cache is None or cache.shape[1] == 0 else torch.cat([cache, h], dim=1)
    return full[:, -length:].detach().clone(memory_format=torch.contiguous_format)


@dataclass(frozen=True)
class KVCacheState:
    """Inference twin of XLCacheState: per layer, the keys and values (B, H, C_l, Dh) already projected from the
    cached states, so generating one token costs one projection per layer instead of re-projecting the window."""

    keys: tuple[Tensor, ...]
    values: tuple[Tensor, ...]
