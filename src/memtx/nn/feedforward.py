"""Position-wise feed-forward sublayer of the Transformer baseline."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from memtx.nn.linear import Linear


class FeedForward(nn.Module):
    """Linear(D, d_ff) -> ReLU -> dropout -> Linear(d_ff, D), as in the official adaptive-span code."""

    def __init__(self, d_model: int, d_ff: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.fc1 = Linear(d_model, d_ff)
        self.fc2 = Linear(d_ff, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, h: Tensor) -> Tensor:
        return self.fc2(self.dropout(F.relu(self.fc1(h))))
