"""The model's typed, frozen configuration, validated at construction."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from memtx.errors import ConfigError


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a memtx language model.

    ``block="allattn"`` is the All-attention layer of Sukhbaatar et al. 2019 (arXiv 1907.01470): attention whose
    keys/values are extended with ``n_persistent`` learned vectors per head, and no feed-forward sublayer.
    ``block="transformer"`` is the baseline layer (attention + ReLU FFN of width ``d_ff``); setting
    ``n_persistent > 0`` there too gives attention with persistent memory *and* an FFN.
    """

    vocab_size: int = 256
    """Number of token ids (256 for bytes)."""
    n_layers: int = 8
    """L: number of layers."""
    d_model: int = 256
    """D: model width."""
    n_heads: int = 4
    """H: attention heads; must divide d_model."""
    block: Literal["allattn", "transformer"] = "allattn"
    """Layer type: 'allattn' (persistent memory, no FFN) or 'transformer' (attention + FFN)."""
    n_persistent: int = 256
    """N: persistent key/value vectors per head and per layer (0 = plain attention)."""
    d_ff: int = 1024
    """Inner width of the FFN (transformer block only)."""
    span: int = 512
    """Attention span: each token sees itself and the span-1 tokens before it; also the XL cache length."""
    dropout: float = 0.0
    """Dropout on attention probabilities (and FFN activations), as in the official code."""
    emb_dropout: float = 0.0
    """Dropout on the input embeddings and on the last hidden states."""
    adaptive_span: bool = False
    """Learn one span per head (Sukhbaatar et al. 2019, 'Adaptive Attention Span')."""
    span_ramp: int = 32
    """R: length of the soft ramp of the adaptive span mask."""
    span_init: float = 0.0
    """Initial value of the learned span ratio z in [0, 1]."""
    span_loss: float = 0.0
    """Coefficient of the L1 span penalty coef * span * mean(z)."""
    span_cache: bool = True
    """With adaptive span: trim the cache (and the attention compute) to the learned span."""

    def __post_init__(self) -> None:
        for name in ("dropout", "emb_dropout", "span_init", "span_loss"):
            if getattr(self, name) != getattr(self, name):
                raise ConfigError(f"model.{name} is NaN: give a number")
        positive = ("vocab_size", "n_layers", "d_model", "n_heads", "span", "span_ramp")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"model.{name} must be >= 1, got {getattr(self, name)}")
        if self.d_model % self.n_heads:
            raise ConfigError(
                f"model.n_heads={self.n_heads} does not divide model.d_model={self.d_model}: "
                "choose heads that divide the width (e.g. --model.n-heads 4)"
            )
        if self.block not in ("allattn", "transformer"):
            raise ConfigError(f"model.block must be 'allattn' or 'transformer', got {self.block!r}")
        if self.n_persistent < 0:
            raise ConfigError(f"model.n_persistent must be >= 0, got {self.n_persistent}")
        if self.block == "transformer" and self.d_ff < 1:
            raise ConfigError(f"model.d_ff must be >= 1 for a transformer block, got {self.d_ff}")
        for name in ("dropout", "emb_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"model.{name} must be in [0, 1), got {getattr(self, name)}")
        if not 0.0 <= self.span_init <= 1.0:
            raise ConfigError(f"model.span_init must be in [0, 1], got {self.span_init}")
        if self.span_loss < 0:
            raise ConfigError(f"model.span_loss must be >= 0, got {self.span_loss}")

    @property
    def d_head(self) -> int:
        """Dh: width of one head."""
        return self.d_model // self.n_heads
