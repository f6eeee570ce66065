"""Optimisers of the paper and the learning-rate schedule.

Char-level runs (official adaptive-span code): Adagrad whose *step size* is clipped per parameter tensor: when a
tensor's gradient norm exceeds ``clip`` its step is scaled by clip / norm, while the accumulator sees the raw
gradient. Word-level runs: Adam with global gradient-norm clipping.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from memtx.training.config import OptimConfig


class AdagradStepClip(torch.optim.Optimizer):
    """Adagrad with per-tensor step-size clipping (``AdagradWithGradClip`` of the official code)."""

    def __init__(self, params, lr: float, clip: float = 0.0, eps: float = 1e-10) -> None:
        super().__init__(params, dict(lr=lr, clip=clip, eps=eps))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                state = self.state[p]
                if not state:
                    state["sum"] = torch.zeros_like(p)
                lr = group["lr"]
                if group["clip"] > 0:
                    norm = _item(grad.norm())
                    if norm > group["clip"]:
                        lr = lr * group["clip"] / (norm + 1e-10)
                state["sum"].addcmul_(grad, grad)
                p.addcdiv_(grad, state["sum"].sqrt().add_(group["eps"]), value=-lr)


def build_optimizer(params: list[nn.Parameter], cfg: OptimConfig) -> torch.optim.Optimizer:
    if cfg.name == "adagrad":
        return AdagradStepClip(params, lr=cfg.lr, clip=cfg.clip)
    cls = torch.optim.AdamW if cfg.name == "adamw" else torch.optim.Adam
    return cls(params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), weight_decay=cfg.weight_decay)


def build_schedule(optimizer: torch.optim.Optimizer, cfg: OptimConfig) -> LambdaLR:
    """Linear warm-up to the peak rate (the first step already moves), then constant, times decay_factor
    from step decay_at on."""

    def factor(step: int) -> float:
        f = min(1.0, (step + 1) / cfg.warmup) if cfg.warmup else 1.0
        return f * (cfg.decay_factor if cfg.decay_at and step >= cfg.decay_at else 1.0)

    return LambdaLR(optimizer, factor)


def clip_gradients(params: list[nn.Parameter], cfg: OptimConfig) -> float:
    """Global norm clipping for adam(w) (adagrad clips per tensor inside its step). Returns the global norm."""
    max_norm = cfg.clip if cfg.name != "adagrad" and cfg.clip > 0 else float("inf")
    return _item(torch.nn.utils.clip_grad_norm_(params, max_norm))


def _item(t: torch.Tensor) -> float:
    """A scalar as a float, also when it is a DTensor (FSDP2): its global value."""
    return float(t.full_tensor() if hasattr(t, "full_tensor") else t)
