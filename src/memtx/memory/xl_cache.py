"""Transformer-XL-style cache (Dai et al. 2019) as used by the All-attention network.

Each layer keeps its *input* hidden states of the last C positions, detached, and re-projects keys/values from
them at the next segment. Gradients stop at the segment boundary. The state is a value: ``forward`` returns the
next state and never stores it on a module.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

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
class RingKV:
    """One layer's keys and values for generation, the inference twin of its hidden-state cache: ``keys`` and
    ``values`` (B, H, N + W, Dh) hold a fixed prefix of N positions (the persistent vectors, or none), then a ring
    of W slots (the layer's window) where the position p, counted from the oldest state projected, sits in slot
    p % W. ``length`` positions were written. A new token costs one write, never a copy of the window; which
    distance each slot is at follows from ``newest`` (``relative_attention_step``).

    The prefix is copied into the keys at batch 1 (one matmul over [prefix ; ring], fewest calls per token); at
    larger batches it stays one (H, N, Dh) pair, ``shared``, read once for all rows.

    Writes go in place: the state passed in keeps seeing what it saw only until a state continued from it writes
    over a slot, so continue one state only."""

    keys: Tensor
    values: Tensor
    n_prefix: int
    length: int
    previous_key: Tensor | None = None  # (B, H, Dh) the newest position's key before smearing (smeared keys)
    shared: tuple[Tensor, Tensor] | None = None  # the (H, N, Dh) prefix when it is not in the keys

    @property
    def window(self) -> int:
        return self.keys.shape[2] - self.n_prefix

    @property
    def filled(self) -> int:
        """Ring slots holding a key: slots 0 .. filled-1."""
        return min(self.length, self.window)

    @property
    def newest(self) -> int:
        """The slot of the last position written."""
        return (self.length - 1) % self.window


def ring_kv(
    k: Tensor, v: Tensor, prefix: tuple[Tensor, Tensor] | None, window: int, previous_key: Tensor | None = None
) -> RingKV:
    """The ring of a layer from the keys and values of its C < W newest cached states, k, v (B, H, C, Dh), oldest
    first, and its (H, N, Dh) prefix."""
    b, h, c, dh = k.shape
    if c >= window:
        raise ValueError(f"{c} cached positions do not leave a slot for the new one in a window of {window}")
    if prefix is not None and b > 1:
        return replace(ring_kv(k, v, None, window, previous_key), shared=prefix)
    n = prefix[0].shape[1] if prefix is not None else 0
    keys, values = k.new_zeros(b, h, n + window, dh), v.new_zeros(b, h, n + window, dh)
    if prefix is not None:
        keys[:, :, :n], values[:, :, :n] = prefix
    keys[:, :, n : n + c], values[:, :, n : n + c] = k, v
    return RingKV(keys, values, n, c, previous_key)


def ring_append(ring: RingKV, k: Tensor, v: Tensor, raw_key: Tensor | None = None) -> RingKV:
    """Write one new position's k, v (B, H, Dh) into its slot (overwriting the position W before it); raw_key =
    its key before smearing, kept for the next position's."""
    slot = ring.n_prefix + ring.length % ring.window
    # a slice, not an index: torch.compile would specialise (and recompile) on an integer index
    ring.keys[:, :, slot : slot + 1] = k.unsqueeze(2)
    ring.values[:, :, slot : slot + 1] = v.unsqueeze(2)
    return RingKV(ring.keys, ring.values, ring.n_prefix, ring.length + 1, raw_key, ring.shared)
