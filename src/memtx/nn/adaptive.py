"""Adaptive input embeddings and adaptive softmax head, optionally tied.

Both split the vocabulary (ids in frequency order, most frequent first) into bands at ``cutoffs``:
band b holds ids ``[cutoffs[b-1], cutoffs[b])`` (with 0 and V at the ends) and works in width
``d_b = D // factor**b``, so frequent words get wide vectors and rare words narrow ones.

- :class:`AdaptiveInput` (Baevski & Auli 2019, "Adaptive Input Representations for Neural Language Modeling",
  arXiv 1809.10853; fairseq ``AdaptiveInput``): band b embeds its ids at width d_b and projects them to D. Every
  band, band 0 included, has its projection, as in fairseq. Init as fairseq: embeddings N(0, d_b^-1/2),
  projections Xavier-uniform; the output is multiplied by sqrt(D) (fairseq's ``embed_scale``) unless
  ``scale=False``.
- :class:`AdaptiveHead` (Grave et al. 2017, "Efficient softmax approximation for GPUs") wraps
  ``torch.nn.AdaptiveLogSoftmaxWithLoss``: the head scores band 0's words plus one logit per tail cluster; tail
  cluster i (= band i+1) maps h (D) down to d_{i+1}, then to its words.

Tying (fairseq ``--tie-adaptive-weights --tie-adaptive-proj``, as used for WikiText-103):
- head word rows (band 0, shape (cutoffs[0], D)) = the input's band-0 embedding; the cluster rows stay the head's own;
- tail cluster i output matrix (band i+1 words, d_{i+1}) = the input's band-(i+1) embedding;
- with ``tie_projections``: tail cluster i down-projection (d_{i+1}, D) = the input's band-(i+1) projection. The
  input stores it as (d_b, D) and computes ``e @ P`` (d_b -> D); the softmax computes ``h @ P.T`` (D -> d_b), the
  transpose, as fairseq's ``TiedLinear(transpose=True)``.
The input's band-0 projection has no counterpart in the softmax and stays untied. Tied Parameters are registered
once, in the :class:`AdaptiveInput`; the head reads them at call time (it keeps a plain reference, not a
submodule), so ``state_dict()`` holds each tensor once (safetensors ``save_file`` refuses shared tensors) and the
input must live in the same model as the head.

WikiText-103 (V = 267,735), as in fairseq's ``transformer_lm_wiki103``: cutoffs ``(20000, 60000)``, i.e. bands of
20K, 40K and ~208K words ("20K/40K/200K"), factor 4, tied. Transformer-XL instead uses the cumulative cutoffs
``(20000, 40000, 200000)`` (four clusters).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: Baevski & Auli / fairseq ``transformer_lm_wiki103``: bands of 20K, 40K and the remaining ~208K words.
WIKITEXT103_CUTOFFS: tuple[int, ...] = (20_000, 60_000)
#: Transformer-XL's WikiText-103 cutoffs (cumulative, four clusters).
TRANSFORMER_XL_WT103_CUTOFFS: tuple[int, ...] = (20_000, 40_000, 200_000)
WIKITEXT103_VOCAB_SIZE = 267_735
ADAPTIVE_FACTOR = 4.0


def band_widths(d_model: int, n_bands: int, factor: float) -> tuple[int, ...]:
    """d_b = D // factor**b for each band (the rounding ``torch.nn.AdaptiveLogSoftmaxWithLoss`` uses)."""
    return tuple(int(d_model // (factor**b)) for b in range(n_bands))


def _check(vocab_size: int, d_model: int, cutoffs: Sequence[int], factor: float) -> tuple[int, ...]:
    cutoffs = tuple(int(c) for c in cutoffs)
    if not cutoffs or list(cutoffs) != sorted(set(cutoffs)) or cutoffs[0] <= 0 or cutoffs[-1] >= vocab_size:
        raise ValueError(f"cutoffs must be increasing integers in (0, V={vocab_size}), got {list(cutoffs)}")
    if factor < 1:
        raise ValueError(f"factor must be >= 1, got {factor}")
    widths = band_widths(d_model, len(cutoffs) + 1, factor)
    if widths[-1] < 1:
        raise ValueError(f"d_model={d_model} / factor={factor}**{len(cutoffs)} leaves the last band no width")
    return cutoffs


class AdaptiveInput(nn.Module):
    """Token ids (any shape) -> embeddings (..., D) with band-dependent width; see the module docstring."""

    def __init__(
        self, vocab_size: int, d_model: int, cutoffs: Sequence[int], factor: float = ADAPTIVE_FACTOR, scale: bool = True
    ) -> None:
        super().__init__()
        self.cutoffs = _check(vocab_size, d_model, cutoffs, factor)
        self.vocab_size, self.d_model, self.factor = vocab_size, d_model, factor
        self.bounds = (0, *self.cutoffs, vocab_size)
        self.widths = band_widths(d_model, len(self.bounds) - 1, factor)
        self.embed_scale = math.sqrt(d_model) if scale else 1.0
        self.embeddings = nn.ModuleList(
            nn.Embedding(hi - lo, d) for lo, hi, d in zip(self.bounds[:-1], self.bounds[1:], self.widths)
        )
        # (d_b, D): the input computes e @ P; a tied softmax uses P as its D -> d_b Linear weight.
        self.projections = nn.ParameterList(nn.Parameter(torch.empty(d, d_model)) for d in self.widths)
        self.register_buffer("boundaries", torch.tensor(self.cutoffs), persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for emb, proj in zip(self.embeddings, self.projections):
            nn.init.normal_(emb.weight, mean=0.0, std=emb.embedding_dim**-0.5)
            nn.init.xavier_uniform_(proj)

    def forward(self, tokens: Tensor) -> Tensor:
        flat = tokens.reshape(-1)
        band = torch.bucketize(flat, self.boundaries, right=True)  # ids < 0 land in band 0, ids >= V in the last
        out: Tensor | None = None
        for b, (emb, proj) in enumerate(zip(self.embeddings, self.projections)):
            rows = (band == b).nonzero().squeeze(1)
            if rows.numel() == 0:
                continue
            x = emb(flat[rows] - self.bounds[b]) @ proj  # (n_b, D); out-of-range ids raise in the lookup
            if out is None:
                out = x.new_zeros(flat.numel(), self.d_model)
            out.index_copy_(0, rows, x)
        if out is None:
            out = self.projections[0].new_zeros(flat.numel(), self.d_model)
        return (out * self.embed_scale).view(*tokens.shape, self.d_model)


class _TiedLinear(nn.Module):
    """``x @ W.T`` with W read from an :class:`AdaptiveInput` at call time (not registered here)."""

    def __init__(self, source: tuple[AdaptiveInput], kind: str, band: int) -> None:
        super().__init__()
        self._source, self.kind, self.band = source, kind, band

    @property
    def weight(self) -> Tensor:
        inp = self._source[0]
        return inp.embeddings[self.band].weight if self.kind == "embedding" else inp.projections[self.band]

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight)


class _TiedHeadLinear(nn.Module):
    """Head logits: band-0 word rows from the input's band-0 embedding, cluster rows owned here."""

    def __init__(self, source: tuple[AdaptiveInput], n_clusters: int, d_model: int) -> None:
        super().__init__()
        self._source = source
        self.cluster_weight = nn.Parameter(torch.empty(n_clusters, d_model))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.kaiming_uniform_(self.cluster_weight, a=math.sqrt(5))  # as nn.Linear

    @property
    def weight(self) -> Tensor:
        return torch.cat([self._source[0].embeddings[0].weight, self.cluster_weight])

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight)


class AdaptiveHead(nn.Module):
    """Adaptive softmax over V words from hidden states h (..., D); wraps ``nn.AdaptiveLogSoftmaxWithLoss``.

    ``tie_to``: an :class:`AdaptiveInput` with the same V, D, cutoffs and factor whose embeddings (and, with
    ``tie_projections``, projections) the softmax reuses; see the module docstring. ``dropout`` applies inside each
    tail cluster between its projection and its output layer (fairseq's ``adaptive_softmax_dropout``).
    """

    def __init__(
        self,
        d_model: int,
        vocab_size: int,
        cutoffs: Sequence[int],
        div_value: float = ADAPTIVE_FACTOR,
        tie_to: AdaptiveInput | None = None,
        tie_projections: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        cutoffs = _check(vocab_size, d_model, cutoffs, div_value)
        self.vocab_size, self.d_model = vocab_size, d_model
        self.asm = nn.AdaptiveLogSoftmaxWithLoss(d_model, vocab_size, list(cutoffs), div_value=div_value)
        self.tied = tie_to is not None
        source: tuple[AdaptiveInput] | None = None
        if tie_to is not None:
            mine, theirs = (
                (vocab_size, d_model, cutoffs, div_value),
                (
                    tie_to.vocab_size,
                    tie_to.d_model,
                    tie_to.cutoffs,
                    tie_to.factor,
                ),
            )
            if mine != theirs:
                raise ValueError(f"tie_to has (V, D, cutoffs, factor) = {theirs}, the head {mine}: they must match")
            source = (tie_to,)  # a tuple, so the input is not registered (and saved) a second time
            self.asm.head = _TiedHeadLinear(source, self.asm.n_clusters, d_model)
        for i, (down, up) in enumerate(list(self.asm.tail)):
            if source is not None:
                up = _TiedLinear(source, "embedding", i + 1)
                if tie_projections:
                    down = _TiedLinear(source, "projection", i + 1)
            if source is not None or dropout > 0:
                self.asm.tail[i] = nn.Sequential(down, nn.Dropout(dropout), up)

    def _call(self, fn, h: Tensor, *args: Tensor) -> Tensor:
        """``fn(h as (N, D), *args)``; under autocast in float32 with autocast off (torch's module mixes dtypes
        under autocast, and log-probs summed over a split must not be rounded to 16 bits)."""
        flat = h.reshape(-1, self.d_model)
        if not torch.is_autocast_enabled(flat.device.type):
            return fn(flat, *args)
        with torch.autocast(flat.device.type, enabled=False):
            return fn(flat.float(), *args)

    def log_prob(self, h: Tensor) -> Tensor:
        """Log-probabilities of all V words: (..., D) -> (..., V); each row's logsumexp is 0."""
        return self._call(self.asm.log_prob, h).view(*h.shape[:-1], self.vocab_size)

    def nll(self, h: Tensor, target: Tensor, ignore_index: int = -100) -> Tensor:
        """Per-token negative log-likelihood (nats): h (..., D), target (...) -> (...); 0 where target == ignore_index.

        Only the head and the clusters that the targets fall in are computed (``AdaptiveLogSoftmaxWithLoss.forward``).
        """
        return self._call(self._nll_rows, h, target.reshape(-1), ignore_index).view(target.shape)

    def _nll_rows(self, h: Tensor, target: Tensor, ignore_index: int) -> Tensor:
        keep = target != ignore_index
        if bool(keep.all()):
            return -self.asm(h, target).output
        rows = keep.nonzero().squeeze(1)
        picked = -self.asm(h.index_select(0, rows), target.index_select(0, rows)).output
        return picked.new_zeros(target.numel()).index_copy(0, rows, picked)

    def forward(self, h: Tensor, target: Tensor, ignore_index: int = -100) -> Tensor:
        """Same as :meth:`nll`."""
        return self.nll(h, target, ignore_index)
