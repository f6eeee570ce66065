"""Recurrent Memory Transformer memory tokens (Bulatov, Kuratov & Burtsev, NeurIPS 2022, arXiv 2207.06881).

Decoder-only layout: each segment runs as ``[read ; tokens ; write]`` where read and write are both the current
M memory vectors. Under the causal mask the write block sees the whole segment; its last-layer outputs become the
next segment's memory. The first segment reads a learned initial memory. The state keeps its autograd graph, so
gradients flow from one segment to the next until the segment loop detaches it (``models/segments.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class MemoryTokensState:
    """memory (B, M, D): the write block's last-layer outputs of the previous segment."""

    memory: Tensor
    PREFIX = "memory_tokens"

    def detach(self) -> MemoryTokensState:
        return MemoryTokensState(self.memory.detach())

    def to_tensors(self) -> dict[str, Tensor]:
        return {self.PREFIX: self.memory.contiguous()}

    @staticmethod
    def from_tensors(tensors: dict[str, Tensor]) -> MemoryTokensState:
        return MemoryTokensState(tensors[MemoryTokensState.PREFIX])


class MemoryTokens(nn.Module):
    """M memory tokens around every segment; works with any block type (the blocks see one longer sequence)."""

    def __init__(self, n_tokens: int, d_model: int, init_std: float = 1.0) -> None:
        super().__init__()
        self.n_tokens = n_tokens
        # scaled like the token embeddings (official code: randn * embedding std; ours are N(0, 1))
        self.initial = nn.Parameter(torch.randn(n_tokens, d_model) * init_std)  # M, D

    def initial_state(self, batch_size: int) -> MemoryTokensState:
        return MemoryTokensState(self.initial.unsqueeze(0).expand(batch_size, -1, -1))

    def run(
        self, blocks: nn.ModuleList, h: Tensor, state: MemoryTokensState | None, pos: Tensor
    ) -> tuple[Tensor, MemoryTokensState]:
        memory = (state or self.initial_state(h.shape[0])).memory  # B, M, D
        m = self.n_tokens
        h = torch.cat([memory, h, memory], dim=1)  # B, M+T+M, D: [read ; tokens ; write]
        for block in blocks:
            h = block(h, None, pos)
        return h[:, m:-m], MemoryTokensState(h[:, -m:])
