"""The language model: embed -> memory mechanism around the blocks -> head."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from memtx.memory.associative import AssociativeMemory
from memtx.memory.memory_tokens import MemoryTokens
from memtx.memory.state import MemoryState, SegmentMemory, state_from_tensors
from memtx.memory.xl_cache import RingKV, XLCache, XLCacheState
from memtx.models.blocks import AllAttentionBlock, StepTables, TransformerBlock
from memtx.models.config import ModelConfig
from memtx.nn.adaptive import AdaptiveHead, AdaptiveInput
from memtx.nn.linear import Linear


@dataclass(frozen=True)
class LMOutput:
    logits: Tensor | None  # (B, T, V) scores (log-probabilities with the adaptive softmax); None when only the
    # targets' rows were scored (``scores="targets"``), with the adaptive softmax given targets (only the clusters
    # they need are computed), or with ``scores="none"``
    state: MemoryState  # the memory to pass with the next segment
    nll: Tensor | None = None  # (B, T) nats of each target when targets were given; 0 where the target is -100
    hits: Tensor | None = None  # (B, T) bool, target == argmax of its scores (False where -100); None with the
    # adaptive softmax


@dataclass(frozen=True)
class KVCacheState:
    """Inference twin of ``XLCacheState`` (``TransformerLM.kv_cache``): per layer, the ring of projected keys and
    values (``RingKV``, written in place: continue one state only) and the step's constants of the weights."""

    rings: tuple[RingKV, ...]
    tables: tuple[StepTables, ...]


def build_memory(cfg: ModelConfig) -> SegmentMemory:
    """The mechanism that carries information from one segment to the next (``cfg.memory``)."""
    if cfg.memory == "rmt":
        return MemoryTokens(cfg.mem_tokens, cfg.d_model)
    if cfg.memory == "armt":
        return AssociativeMemory(cfg.n_layers, cfg.d_model, cfg.mem_tokens, cfg.mem_dim, cfg.mem_heads)
    return XLCache(cfg.xl_len)


class TransformerLM(nn.Module):
    """Byte/word LM: embed -> blocks run by the memory mechanism (XL cache, memory tokens, associative memory) ->
    head. ``forward(x, state) -> (logits, next state)`` is the same for every mechanism.

    One learned relative-position table of shape (Dh, span) is shared by all layers and heads (paper, section 4).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        if cfg.vocab_size < 1:
            raise ValueError("model.vocab_size is 0: resolve it from the tokenizer before building the model")
        if cfg.adaptive:
            self.embed = AdaptiveInput(cfg.vocab_size, cfg.d_model, cfg.cutoffs, cfg.adaptive_factor)
        else:
            self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.emb_dropout = nn.Dropout(cfg.emb_dropout)
        self.pos = nn.Parameter(torch.randn(cfg.d_head, cfg.span))
        block = AllAttentionBlock if cfg.block == "allattn" else TransformerBlock
        self.blocks = nn.ModuleList(block(cfg) for _ in range(cfg.n_layers))
        self.memory = build_memory(cfg)
        self.final_norm = nn.LayerNorm(cfg.d_model) if cfg.norm == "pre" else nn.Identity()
        if cfg.adaptive:
            tie = self.embed if cfg.tie_adaptive else None
            self.head = AdaptiveHead(cfg.d_model, cfg.vocab_size, cfg.cutoffs, cfg.adaptive_factor, tie_to=tie)
        else:
            self.head = Linear(cfg.d_model, cfg.vocab_size)

    def forward(
        self, x: Tensor, state: MemoryState | None = None, targets: Tensor | None = None, scores: str = "all"
    ) -> LMOutput:
        """x (B, T) token ids; state from the previous segment of the same streams, or None to start fresh;
        targets (B, T) next-token ids (-100 = not scored) to also get each target's nats in ``nll`` and ``hits``.
        scores: "all" positions' logits; "targets": only the scored targets' rows go through the head (a task's
        answers among text; ``logits`` is None); "none": no head, only the state (reading a prompt)."""
        if scores not in ("all", "targets", "none") or (scores != "all" and (targets is None) != (scores == "none")):
            raise ValueError(f"scores={scores!r}: pass 'all', 'targets' with targets, or 'none' without them")
        h = self.emb_dropout(self.embed(x))
        h, state = self.memory.run(self.blocks, h, state, self.pos)
        if scores == "none":
            return LMOutput(None, state)
        h = self.emb_dropout(self.final_norm(h))
        if isinstance(self.head, AdaptiveHead):
            nll = self.head.nll(h, targets) if targets is not None else None
            return LMOutput(self.head.log_prob(h) if targets is None else None, state, nll)
        if targets is None:
            return LMOutput(self.head(h), state)
        scored = targets != -100
        if scores == "targets":
            logits = self.head(h[scored])
            nll, hits = torch.zeros(targets.shape, device=h.device), torch.zeros_like(scored)  # fp32, as below
            nll[scored] = F.cross_entropy(logits.float(), targets[scored], reduction="none")
            hits[scored] = logits.detach().argmax(-1) == targets[scored]
            return LMOutput(None, state, nll, hits)
        logits = self.head(h)
        nll = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=-100, reduction="none")
        hits = (logits.detach().argmax(-1) == targets) & scored
        return LMOutput(logits, state, nll.view(targets.shape), hits)

    def scores(self, h: Tensor) -> Tensor:
        """Next-token scores of final hidden states (B, ..., D) -> (B, ..., V)."""
        return self.head.log_prob(h) if isinstance(self.head, AdaptiveHead) else self.head(h)

    @property
    def decodes_incrementally(self) -> bool:
        """True when ``kv_cache``/``decode`` apply (the XL cache); other mechanisms generate by re-reading the
        current segment (``models/generation.py``)."""
        return isinstance(self.memory, XLCache)

    def kv_cache(self, state: XLCacheState | None, batch_size: int) -> KVCacheState:
        """Project a hidden-state cache into the rings of keys and values that ``decode`` continues from (exact:
        the keys and values the next ``forward`` would compute)."""
        rings = []
        for i, block in enumerate(self.blocks):
            cache = state.hidden[i] if state is not None else None
            if cache is None:
                cache = self.pos.new_zeros(batch_size, 0, self.cfg.d_model)
            rings.append(block.ring(cache))
        return KVCacheState(tuple(rings), tuple(b.step_tables(self.pos) for b in self.blocks))

    def decode(self, x: Tensor, kv: KVCacheState) -> tuple[Tensor, KVCacheState]:
        """One token per stream: x (B, 1) -> (logits (B, V), next K/V cache). Equals ``forward`` position by
        position (tests/models/test_transformer_lm.py)."""
        h = self.embed(x[:, 0])  # (B, D); no dropout: generation runs in eval mode
        rings = []
        for block, ring, tables in zip(self.blocks, kv.rings, kv.tables, strict=True):
            h, ring = block.decode(h, ring, tables)
            rings.append(ring)
        return self.scores(self.final_norm(h)), KVCacheState(tuple(rings), kv.tables)

    def aux_loss(self) -> Tensor | float:
        """Regularisers to add to the training loss (the adaptive-span L1 penalty), 0.0 when there are none."""
        spans = [b.adaptive_span for b in self.blocks if b.adaptive_span is not None]
        return sum((s.penalty() for s in spans), torch.zeros(())) if spans else 0.0

    def after_step(self) -> None:
        """Projections to apply after each optimiser step (clamp the learned spans to [0, 1])."""
        for b in self.blocks:
            if b.adaptive_span is not None:
                b.adaptive_span.clamp_()

    @property
    def device(self) -> torch.device:
        """Where the model's parameters are: callers move their inputs there."""
        return self.pos.device

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def memory_from_tensors(tensors: dict[str, Tensor]) -> MemoryState:
    """Inverse of ``state.to_tensors()`` for any mechanism (used when resuming a checkpoint)."""
    return state_from_tensors(tensors)
