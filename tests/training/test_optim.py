"""Adagrad with per-tensor step clipping matches the official update rule."""

import torch

from memtx.training.config import OptimConfig
from memtx.training.optim import AdagradStepClip, build_schedule


def official_adagrad_step(p, grad, acc, lr, clip):
    """The official AdagradWithGradClip.step for one tensor (lr_decay 0, eps 1e-10)."""
    clr = lr
    norm = grad.norm(2).item()
    if clip > 0 and norm > clip:
        clr *= clip / (norm + 1e-10)
    acc = acc + grad * grad
    return p - clr * grad / (acc.sqrt() + 1e-10), acc


def test_adagrad_step_clip_matches_official_rule():
    torch.manual_seed(0)
    small, big = torch.nn.Parameter(torch.randn(5)), torch.nn.Parameter(torch.randn(3, 4))
    ref = {
        id(small): (small.detach().clone(), torch.zeros(5)),
        id(big): (big.detach().clone(), torch.zeros(3, 4)),
    }
    opt = AdagradStepClip([small, big], lr=0.07, clip=0.03)
    for step in range(4):
        small.grad = torch.randn(5) * 0.001  # below the clip
        big.grad = torch.randn(3, 4) * (step + 1)  # above it
        for p in (small, big):
            w, acc = ref[id(p)]
            ref[id(p)] = official_adagrad_step(w, p.grad, acc, 0.07, 0.03)
        opt.step()
        for p in (small, big):
            torch.testing.assert_close(p.detach(), ref[id(p)][0], rtol=1e-6, atol=1e-7)


def test_schedule_warmup_then_decay():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = build_schedule(opt, OptimConfig(name="adam", lr=1.0, warmup=4, decay_at=6, decay_factor=0.1))
    lrs = []
    for _ in range(8):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0, 0.1, 0.1]
