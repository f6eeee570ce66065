"""The memory-state protocol shared by every mechanism, and the one function that rebuilds any state from disk.

A state is a frozen value: ``forward`` returns the next one and nothing is stored on a module. Every tensor in a
state is batch-first, so a state can be split by rows (distributed training) or saved as flat safetensors.
"""

from __future__ import annotations

from typing import Protocol

from torch import Tensor, nn


class MemoryState(Protocol):
    def detach(self) -> MemoryState:
        """The same state cut from the autograd graph (ends backpropagation through time here)."""
        ...

    def to_tensors(self) -> dict[str, Tensor]:
        """Flat, contiguous, batch-first tensors keyed by a mechanism prefix (for safetensors)."""
        ...


class SegmentMemory(Protocol):
    """A memory mechanism: how one segment runs through the blocks, reading and writing the state."""

    def run(
        self, blocks: nn.ModuleList, h: Tensor, state: MemoryState | None, pos: Tensor
    ) -> tuple[Tensor, MemoryState]:
        """h (B, T, D) embedded segment; state from the previous segment or None. Returns the blocks' output for
        the T positions and the state for the next segment."""
        ...


def state_from_tensors(tensors: dict[str, Tensor]) -> MemoryState:
    """Inverse of ``state.to_tensors()`` for any mechanism (used when resuming a checkpoint)."""
    from memtx.memory.associative import AssociativeState
    from memtx.memory.memory_tokens import MemoryTokensState
    from memtx.memory.xl_cache import XLCacheState

    for state_type in (XLCacheState, MemoryTokensState, AssociativeState):
        if any(key.startswith(state_type.PREFIX) for key in tensors):
            return state_type.from_tensors(tensors)
    raise ValueError(f"no memory state in tensors {sorted(tensors)[:4]}")
