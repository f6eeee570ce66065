"""Associative Recurrent Memory Transformer memory (Rodkin, Kuratov, Bulatov & Burtsev 2024, arXiv 2407.04841).

Every layer l owns an associative matrix A_l and a normaliser z_l per head, carried from segment to segment;
the segment runs as ``[tokens ; write]`` with M learned write tokens (the same every segment: only A and z carry
information across segments).

- Read, before layer l, for every position: ``h += A φ(q) / (z·φ(q) + eps)``, q = W_q h, φ = DPFP (ν = 3),
  L2-normalised.
- Write, after layer l, from the layer's outputs w at the M write positions: k = φ(W_k w) normalised,
  v = W_v w, β = sigmoid(W_b w) per head, the value the memory already holds for k, ``v̄ = A k / (z·k + eps)``;
  then ``A += Σ_m β_m k_m (v_m - v̄_m)ᵀ`` (delta rule) and ``z += Σ_m γ_m k_m`` with
  ``γ = clip(1 - (z·k + eps) / |k|², 0, 1)`` held constant for autograd (the official code's correction).

All M write tokens use the A and z of the start of the segment (the official update, done in one einsum); the
slow twin in ``memory/reference.py`` loops over rows, heads and tokens. The first segment is not special-cased:
from the zero state a read is exactly 0 and v̄ = 0. W_v starts at zero, as in the official code, so a new model
reads nothing until it learns to write.

Norm bound (ours, not the paper's): A grows with every write, and past the segment counts a model trained on its
norm keeps growing, feeding the layers reads far larger than any seen in training (``benchmarks/memory_drift.py``).
So in training each layer records the largest per-row norm its A reaches (a running max that forgets with a
half-life of ~700 writes, so the early steps do not set it), saved with the weights; in evaluation every write is
followed by rescaling each row's A to at most that norm. Within the trained lengths this is (near) a no-op. Being a
max over rows and segments it is loose: on the BABILong qa1 preset it sits 1.3-3x above the typical norm at the
trained length and binds only past it (README, "What limits qa1"). A bound of 0 (a new model, or a run saved
before the bound existed) caps nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

NU = 3  # DPFP order
EPS = 1e-5  # as in the official code
BOUND_DECAY = 0.999  # per training write: the recorded bound forgets with a half-life of ~700 writes


def dpfp(x: Tensor, nu: int = NU) -> Tensor:
    """Deterministic parameter-free projection (Schlag et al. 2021): (..., d) -> (..., 2 d nu), non-negative."""
    x = torch.cat([F.relu(x), F.relu(-x)], dim=-1)
    rolled = torch.cat([x.roll(shifts=j, dims=-1) for j in range(1, nu + 1)], dim=-1)
    return torch.cat([x] * nu, dim=-1) * rolled


@dataclass(frozen=True)
class AssociativeState:
    """Per layer: A[l] (B, H, K, Dv) with K = 2 nu d_mem / H and Dv = D / H, and z[l] (B, H, K)."""

    A: tuple[Tensor, ...]
    z: tuple[Tensor, ...]
    PREFIX = "armt."

    def detach(self) -> AssociativeState:
        return AssociativeState(tuple(a.detach() for a in self.A), tuple(z.detach() for z in self.z))

    def to_tensors(self) -> dict[str, Tensor]:
        out = {f"{self.PREFIX}A.{i}": a.contiguous() for i, a in enumerate(self.A)}
        out.update({f"{self.PREFIX}z.{i}": z.contiguous() for i, z in enumerate(self.z)})
        return out

    @staticmethod
    def from_tensors(tensors: dict[str, Tensor]) -> AssociativeState:
        n = len([k for k in tensors if k.startswith("armt.A.")])
        return AssociativeState(
            tuple(tensors[f"armt.A.{i}"] for i in range(n)), tuple(tensors[f"armt.z.{i}"] for i in range(n))
        )


class AssociativeLayer(nn.Module):
    """The read and write projections of one layer's associative memory."""

    def __init__(self, d_model: int, d_mem: int, n_heads: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.q = nn.Linear(d_model, d_mem, bias=False)
        self.k = nn.Linear(d_model, d_mem, bias=False)
        self.v = nn.Linear(d_model, d_model, bias=False)
        nn.init.zeros_(self.v.weight)
        self.beta = nn.Linear(d_model, n_heads)

    def _heads(self, x: Tensor) -> Tensor:  # (B, S, E) -> (B, H, S, E/H)
        b, s, e = x.shape
        return x.view(b, s, self.n_heads, e // self.n_heads).transpose(1, 2)

    def features(self, x: Tensor, proj: nn.Linear) -> Tensor:
        """φ of the projected x, per head, L2-normalised: (B, S, D) -> (B, H, S, K)."""
        return F.normalize(dpfp(self._heads(proj(x))), dim=-1)

    def read(self, h: Tensor, A: Tensor, z: Tensor) -> Tensor:
        """What the memory returns for every position of h (B, S, D): (B, S, D)."""
        fq = self.features(h, self.q)  # B, H, S, K
        num = fq @ A  # B, H, S, Dv
        den = torch.einsum("bhk,bhsk->bhs", z, fq).unsqueeze(-1) + EPS
        out = num / den
        return out.transpose(1, 2).reshape(h.shape)

    def write(self, w: Tensor, A: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
        """Delta-rule update from the write positions' outputs w (B, M, D). Returns the next (A, z)."""
        fk = self.features(w, self.k)  # B, H, M, K
        v = self._heads(self.v(w))  # B, H, M, Dv
        beta = torch.sigmoid(self.beta(w)).transpose(1, 2)  # B, H, M
        dot = torch.einsum("bhk,bhmk->bhm", z, fk).unsqueeze(-1) + EPS  # B, H, M, 1
        held = (fk @ A) / dot  # B, H, M, Dv: what A returns for each key now
        gamma = (1 - dot / fk.pow(2).sum(-1, keepdim=True)).clamp(0, 1).detach()
        A = A + torch.einsum("bhmk,bhmv->bhkv", fk * beta.unsqueeze(-1), v - held)
        z = z + (gamma * fk).sum(dim=2)
        return A, z


class AssociativeMemory(nn.Module):
    """One associative matrix per layer plus M learned write tokens; works with any block type."""

    # running maxima that data-parallel ranks reduce with max after each step (training/distributed.py); the
    # result is the one process's: max over ranks commutes with the decayed max taken write by write
    max_synced_buffers = ("norm_bound",)

    def __init__(self, n_layers: int, d_model: int, n_tokens: int, d_mem: int, n_heads: int) -> None:
        super().__init__()
        self.n_tokens, self.n_heads = n_tokens, n_heads
        self.key_dim, self.value_dim = 2 * NU * d_mem // n_heads, d_model // n_heads
        self.write_tokens = nn.Parameter(torch.randn(n_tokens, d_model))  # M, D
        self.layers = nn.ModuleList(AssociativeLayer(d_model, d_mem, n_heads) for _ in range(n_layers))
        self.register_buffer("norm_bound", torch.zeros(n_layers))  # per layer; 0: nothing recorded, no cap

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # runs saved before the bound existed load with none (0: no cap), as they ran
        state_dict.setdefault(prefix + "norm_bound", torch.zeros_like(self.norm_bound))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def bounded(self, A: list[Tensor]) -> tuple[Tensor, ...]:
        """Every layer's A after a write: in training, record its largest row norm (this rank's rows; under
        torchrun the trainer takes the largest over ranks after each step, see ``max_synced_buffers``); in
        evaluation, cap each row's norm at the recorded bound."""
        norms = torch.stack([a.detach().flatten(1).norm(dim=1) for a in A])  # layers, B
        if self.training:
            with torch.no_grad():
                top = norms.amax(dim=1)
                self.norm_bound.copy_(torch.maximum(top, self.norm_bound * BOUND_DECAY))
            return tuple(A)
        bound = self.norm_bound.unsqueeze(1)
        scale = torch.where(bound > 0, (bound / norms.clamp_min(1e-12)).clamp(max=1.0), 1.0)  # layers, B
        return tuple(a * s.view(-1, *([1] * (a.dim() - 1))) for a, s in zip(A, scale, strict=True))

    def initial_state(self, batch_size: int, like: Tensor) -> AssociativeState:
        a = like.new_zeros(batch_size, self.n_heads, self.key_dim, self.value_dim)
        z = like.new_zeros(batch_size, self.n_heads, self.key_dim)
        return AssociativeState((a,) * len(self.layers), (z,) * len(self.layers))

    def run(
        self, blocks: nn.ModuleList, h: Tensor, state: AssociativeState | None, pos: Tensor
    ) -> tuple[Tensor, AssociativeState]:
        b, m = h.shape[0], self.n_tokens
        state = state or self.initial_state(b, h)
        h = torch.cat([h, self.write_tokens.unsqueeze(0).expand(b, -1, -1)], dim=1)  # B, T+M, D
        next_a, next_z = [], []
        for block, layer, a, z in zip(blocks, self.layers, state.A, state.z, strict=True):
            h = h + layer.read(h, a, z)
            h = block(h, None, pos)
            a, z = layer.write(h[:, -m:], a, z)
            next_a.append(a)
            next_z.append(z)
        return h[:, :-m], AssociativeState(self.bounded(next_a), tuple(next_z))
