"""Exact bits per byte: every target of the split scored once, in order, memory carried, no overlap.

Sums nats and targets over the whole split and divides once: bpc = nats / (targets * ln 2).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from memtx.data.streams import count_targets, eval_batches
from memtx.models.transformer_lm import TransformerLM


@torch.no_grad()
def evaluate_lm(
    model: TransformerLM,
    data: np.ndarray,
    batch_size: int,
    segment_len: int,
    max_bytes: int = 0,
    progress: bool = False,
    rank: int = 0,
    world: int = 1,
) -> dict[str, float]:
    """{'bpc', 'nats', 'targets'} over data[:max_bytes] (all of it when max_bytes is 0).

    With world > 1 (inside a torchrun process group) rank r scores chunks r, r+W, ... and the nats and target
    counts of all ranks are summed exactly.
    """
    if max_bytes:
        data = data[:max_bytes]
    was_training = model.training
    model.eval()
    n_targets = count_targets(data)
    nats, seen, state = 0.0, 0, None
    bar = tqdm(
        total=n_targets,
        unit="B",
        unit_scale=True,
        desc="evaluate",
        disable=None if progress else True,
        leave=False,
    )
    for x, y in eval_batches(data, batch_size, segment_len):
        x, y = x[rank::world], y[rank::world]  # every rank runs every batch (a sharded model needs them all)
        x, y = x.to(model.device), y.to(model.device)
        out = model(x, state, y)
        state = out.state
        nats += out.nll.double().sum().item()
        batch_targets = int((y != -100).sum())
        seen += batch_targets
        bar.update(batch_targets * world)
    bar.close()
    model.train(was_training)
    if world > 1:
        totals = torch.tensor([nats, float(seen)], dtype=torch.float64)
        dist.all_reduce(totals)
        nats, seen = totals[0].item(), int(totals[1].item())
    assert seen == n_targets, f"scored {seen} targets, expected {n_targets}"
    return {
        "bpc": nats / (n_targets * math.log(2)) if n_targets else float("nan"),
        "nats": nats,
        "targets": n_targets,
    }


@torch.no_grad()
def evaluate_stream(
    model: TransformerLM, chunks: Iterable[bytes], segment_len: int, progress: bool = False
) -> dict[str, float]:
    """Exact bits per byte of a byte stream of any length, read chunk by chunk: one stream, segments of
    `segment_len`, memory carried, every byte after the first scored once. Holds at most one segment of input and
    the model's memory, so peak memory does not grow with the input. Equals ``evaluate_lm(model, all bytes,
    batch_size=1, segment_len)``."""
    was_training = model.training
    model.eval()
    nats, targets, state, pending = 0.0, 0, None, b""
    bar = tqdm(unit="B", unit_scale=True, desc="evaluate", disable=None if progress else True, leave=False)

    def score(window: bytes) -> None:
        nonlocal nats, targets, state
        ids = torch.tensor(list(window), dtype=torch.long).unsqueeze(0).to(model.device)
        out = model(ids[:, :-1], state, ids[:, 1:])
        state = out.state
        nats += out.nll.double().sum().item()
        targets += ids.shape[1] - 1
        bar.update(ids.shape[1] - 1)

    for chunk in chunks:
        pending += chunk
        while len(pending) > segment_len:
            score(pending[: segment_len + 1])
            pending = pending[segment_len:]
    if len(pending) > 1:
        score(pending)
    bar.close()
    model.train(was_training)
    return {"bpc": nats / (targets * math.log(2)) if targets else float("nan"), "nats": nats, "targets": targets}
