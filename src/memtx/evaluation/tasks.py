"""Accuracy on the synthetic memory tasks: every held-out sample runs from fresh memory through the segment loop;
argmax predictions are scored on the answer targets only (teacher forcing)."""

from __future__ import annotations

import torch

from memtx.models.segments import segments
from memtx.tasks.synthetic import IGNORE_INDEX, TaskBatches


@torch.no_grad()
def evaluate_task(
    model, batches: TaskBatches, n_samples: int, n_segments: int, batch_size: int
) -> dict[str, float | int]:
    """{'accuracy': answer tokens predicted right / answer tokens, 'exact': samples with every answer token
    right / samples, 'samples', 'targets'}."""
    was_training = model.training
    model.eval()
    correct = exact = targets = samples = 0
    for batch in batches.eval_batches(n_samples, n_segments, batch_size):
        x, y = batch.x.to(model.device), batch.y.to(model.device)
        hits = torch.zeros_like(y, dtype=torch.bool)
        for columns, out in segments(model, x, None, batches.segment_len):
            hits[:, columns] = out.logits.argmax(-1) == y[:, columns]
        scored = y != IGNORE_INDEX
        correct += int((hits & scored).sum())
        targets += int(scored.sum())
        exact += int(((hits | ~scored).all(dim=1)).sum())
        samples += x.shape[0]
    model.train(was_training)
    return {"accuracy": correct / targets, "exact": exact / samples, "samples": samples, "targets": targets}
