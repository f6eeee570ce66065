"""The model's typed, frozen configuration, validated at construction."""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Literal

from memtx.errors import ConfigError


def require_choices(cfg, prefix: str) -> None:
    """Every ``Literal`` field of the dataclass ``cfg`` holds one of its listed values (configs read from JSON or
    built in Python are not checked by the annotation)."""
    for name, hint in typing.get_type_hints(type(cfg)).items():
        value = getattr(cfg, name)
        if typing.get_origin(hint) is Literal and value not in (choices := typing.get_args(hint)):
            raise ConfigError(
                f"{prefix + '.' if prefix else ''}{name} must be one of {', '.join(choices)}, got {value!r}"
            )


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a memtx language model.

    ``block="allattn"`` is the All-attention layer of Sukhbaatar et al. 2019 (arXiv 1907.01470): attention whose
    keys/values are extended with ``n_persistent`` learned vectors per head, and no feed-forward sublayer.
    ``block="transformer"`` is the baseline layer (attention + ReLU FFN of width ``d_ff``); setting
    ``n_persistent > 0`` there too gives attention with persistent memory *and* an FFN.
    """

    vocab_size: int = 256
    """Number of token ids (256 for bytes; 0 = the size of the word vocabulary built from the corpus)."""
    n_layers: int = 8
    """L: number of layers."""
    d_model: int = 256
    """D: model width."""
    n_heads: int = 4
    """H: attention heads; must divide d_model."""
    block: Literal["allattn", "transformer"] = "allattn"
    """Layer type: 'allattn' (persistent memory, no FFN) or 'transformer' (attention + FFN)."""
    norm: Literal["post", "pre"] = "post"
    """Where the LayerNorms sit: 'post' (the papers': LN(h + sublayer(h))) or 'pre' (h + sublayer(LN(h)), with a
    final LN before the head; keys and values are then projected from normalised states, the cache's included)."""
    smear_keys: bool = False
    """Smeared keys (Olsson et al. 2022, 'In-context learning and induction heads'): each key becomes
    s k_j + (1 - s) k_{j-1} with a learned s per head and layer, so that one layer can find 'the token after an
    earlier occurrence of this one'. Not in the All-attention paper; an option for in-context recall tasks."""
    recency_bias: bool = False
    """A learned recency bias per head and layer (ALiBi with learned slopes, memtx.nn.recency): logits minus
    s_h x distance over the context, persistent vectors unbiased. Not in the All-attention paper; an option for
    tasks whose answer is the latest of several matches (bAbI qa1)."""
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
    adaptive: bool = False
    """Adaptive input embeddings and adaptive softmax (Baevski & Auli 2019; Grave et al. 2017), for word vocabularies
    whose ids are ordered by frequency."""
    cutoffs: tuple[int, ...] = (20_000, 60_000)
    """Adaptive: band boundaries (default: WikiText-103's bands of 20K, 40K and the remaining ~208K words)."""
    adaptive_factor: float = 4.0
    """Adaptive: each band is this many times narrower than the previous one."""
    tie_adaptive: bool = True
    """Adaptive: the softmax reuses the input embeddings and projections of each band."""
    memory: Literal["xl", "rmt", "armt"] = "xl"
    """How information crosses segments: 'xl' (Transformer-XL cache of hidden states), 'rmt' (RMT memory
    tokens [read ; segment ; write]), 'armt' (ARMT associative memory per layer)."""
    xl_len: int = 0
    """xl: cached states per layer (0 = the attention span)."""
    mem_tokens: int = 0
    """M: memory tokens (rmt) or write tokens (armt)."""
    mem_dim: int = 64
    """armt: width of the associative keys before the DPFP feature map (2 x 3 x mem_dim after it)."""
    mem_heads: int = 1
    """armt: heads of the associative memory (must divide mem_dim and d_model)."""

    def __post_init__(self) -> None:
        require_choices(self, "model")
        for name in ("dropout", "emb_dropout", "span_init", "span_loss"):
            if getattr(self, name) != getattr(self, name):
                raise ConfigError(f"model.{name} is NaN: give a number")
        object.__setattr__(self, "cutoffs", tuple(self.cutoffs))  # JSON gives a list
        if self.vocab_size < 0:
            raise ConfigError(f"model.vocab_size must be >= 1 (or 0: from the word vocabulary), got {self.vocab_size}")
        if (
            self.adaptive
            and self.vocab_size
            and (
                not self.cutoffs
                or list(self.cutoffs) != sorted(set(self.cutoffs))
                or not 0 < self.cutoffs[0]
                or self.cutoffs[-1] >= self.vocab_size
            )
        ):
            raise ConfigError(
                f"model.cutoffs {list(self.cutoffs)} must increase within (0, vocab_size={self.vocab_size}): "
                "pass e.g. --model.cutoffs 2000 10000"
            )
        if self.adaptive and self.d_model // self.adaptive_factor ** len(self.cutoffs) < 1:
            raise ConfigError("model.adaptive_factor leaves the last adaptive band no width: lower it or the cutoffs")
        positive = ("n_layers", "d_model", "n_heads", "span", "span_ramp")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"model.{name} must be >= 1, got {getattr(self, name)}")
        if self.d_model % self.n_heads:
            raise ConfigError(
                f"model.n_heads={self.n_heads} does not divide model.d_model={self.d_model}: "
                "choose heads that divide the width (e.g. --model.n-heads 4)"
            )
        if self.n_persistent < 0:
            raise ConfigError(f"model.n_persistent must be >= 0, got {self.n_persistent}")
        if self.block == "transformer" and self.d_ff < 1:
            raise ConfigError(f"model.d_ff must be >= 1 for a transformer block, got {self.d_ff}")
        for name in ("dropout", "emb_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"model.{name} must be in [0, 1), got {getattr(self, name)}")
        if not 0.0 <= self.span_init <= 1.0:
            raise ConfigError(f"model.span_init must be in [0, 1], got {self.span_init}")
        if self.xl_len < 0:
            raise ConfigError(f"model.xl_len must be >= 0, got {self.xl_len}")
        if self.memory in ("rmt", "armt") and self.mem_tokens < 1:
            raise ConfigError(f"model.memory={self.memory} needs memory tokens: pass --model.mem-tokens M (M >= 1)")
        if self.memory == "armt" and (
            self.mem_heads < 1 or self.mem_dim < 1 or self.mem_dim % self.mem_heads or self.d_model % self.mem_heads
        ):
            raise ConfigError(
                f"model.mem_heads={self.mem_heads} must be >= 1 and divide model.mem_dim={self.mem_dim} and "
                f"model.d_model={self.d_model}"
            )
        if self.span_loss < 0:
            raise ConfigError(f"model.span_loss must be >= 0, got {self.span_loss}")

    @property
    def d_head(self) -> int:
        """Dh: width of one head."""
        return self.d_model // self.n_heads
