"""What the causal layout with masks and the targets-only head buy: one training step of a BABILong preset, timed
with today's code against the layout before session 30 (the band path whenever a span or recency mask is present,
the output head over every position), alternated in one process.

The two sides differ only in those two choices (``ops.attention.causal_applies`` and the forward's ``scores``), so
they compute the same loss and gradients up to float rounding (tests: ``tests/ops/test_attention.py``,
``test_scoring_only_the_targets_rows_gives_the_same_nats_hits_gradients_and_state``). One rank's share of the
presets' two-rank step: batch 8, one thread, random token ids with 12 scored answer tokens per row.

    OMP_NUM_THREADS=1 python -m benchmarks.fast_path_ab --segments 32     # phase B (ARMT, 32 segments of 128)
    OMP_NUM_THREADS=1 python -m benchmarks.fast_path_ab --preset babilong-qa1-window --segments 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace

import torch

import memtx.ops.attention as attention
from memtx.models.segments import segments
from memtx.models.transformer_lm import TransformerLM
from memtx.presets import PRESETS


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="babilong-qa1-armt-hour-from-window")
    ap.add_argument("--segments", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--out", default="", help="also write the JSON here")
    a = ap.parse_args()
    torch.set_num_threads(1)
    cfg = PRESETS[a.preset][1]
    seg = cfg.segment_len
    torch.manual_seed(0)
    model = TransformerLM(replace(cfg.model, vocab_size=cfg.model.vocab_size or 1024))
    vocab = model.cfg.vocab_size
    x = torch.randint(0, vocab, (a.batch_size, seg * a.segments))
    y = torch.full_like(x, -100)
    for row in y:
        row[torch.randperm(row.numel())[:12]] = torch.randint(0, vocab, (12,))
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    fast = attention.causal_applies

    def before(t, window, n_pad, span_mask, dropout_p, training):  # the band whenever a mask is present
        return span_mask is None and fast(t, window, n_pad, span_mask, dropout_p, training)

    def step(side: str) -> None:
        attention.causal_applies = before if side == "before" else fast
        nats = 0.0
        for _, out in segments(model, x, None, seg, -1, y, "all" if side == "before" else "targets"):
            nats = nats + out.nll.sum()
        (nats / int((y != -100).sum())).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    times: dict[str, list[float]] = {"before": [], "after": []}
    try:
        for side in times:  # warm-up
            step(side)
        for _ in range(a.rounds):
            for side in times:
                t0 = time.perf_counter()
                step(side)
                times[side].append(round(time.perf_counter() - t0, 4))
    finally:
        attention.causal_applies = fast
    median = {k: statistics.median(v) for k, v in times.items()}
    record = {"preset": a.preset, "segments": a.segments, "segment_len": seg, "batch_size": a.batch_size,
              "threads": 1, "torch": torch.__version__, "step_s": times, "median_s": median,
              "speedup": round(median["before"] / median["after"], 3)}  # fmt: skip
    text = json.dumps(record, indent=1)
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
