"""Where a training step's time goes: every aten op of one step timed as it runs (a ``TorchDispatchMode``), summed
by op and input shapes.

On this shared 2-core machine torch.profiler's times for memory-bound ops (copies, cat, softmax) swung 3-10x between
identical steps; timing each op around its own call was stable to ~10%. The mode adds Python overhead per op, so
the step's wall time under it is longer than without; compare ops with each other, not with tokens/s.

    python -m benchmarks.op_times [--preset pg9-allattn-8x256] [--threads 2] [--top 25] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from benchmarks.cases import _memtx_train_step
from memtx.presets import PRESETS
from memtx.runtime import tune_allocator


class OpTimer(TorchDispatchMode):
    """Sums the wall time of every aten op by (op, input shapes)."""

    def __init__(self) -> None:
        super().__init__()
        self.totals: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0])

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        start = time.perf_counter()
        out = func(*args, **(kwargs or {}))
        elapsed = time.perf_counter() - start
        shapes = ", ".join(str(tuple(a.shape)) for a in args if isinstance(a, torch.Tensor))
        entry = self.totals[(func.__name__, shapes)]
        entry[0] += elapsed
        entry[1] += 1
        return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="pg9-allattn-8x256", choices=sorted(PRESETS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--json", default="", help="also write every (op, shapes) total to this JSON file")
    args = parser.parse_args(argv)
    tune_allocator()
    torch.set_num_threads(args.threads)
    run = PRESETS[args.preset][1]
    step = _memtx_train_step(run.model, run.batch_size, run.segment_len, run.unroll)
    for _ in range(3):  # warm-up: allocator, caches, lazy initialisation
        step()
    timer = OpTimer()
    start = time.perf_counter()
    with timer:
        step()
    wall = time.perf_counter() - start
    rows = sorted(((t, n, op, shapes) for (op, shapes), (t, n) in timer.totals.items()), reverse=True)
    by_op: dict[str, float] = defaultdict(float)
    for t, _, op, _ in rows:
        by_op[op] += t
    total = sum(by_op.values())
    print(f"{args.preset}: step {wall * 1e3:.0f} ms under the timer, ops {total * 1e3:.0f} ms")
    print("by op:", ", ".join(f"{op} {t * 1e3:.0f}" for op, t in sorted(by_op.items(), key=lambda kv: -kv[1])[:12]))
    for t, n, op, shapes in rows[: args.top]:
        print(f"{t * 1e3:8.1f} ms {n:5d}x  {op}  {shapes}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"preset": args.preset, "threads": args.threads, "step_ms": wall * 1e3,
                       "ops": [{"op": op, "shapes": shapes, "ms": t * 1e3, "calls": n} for t, n, op, shapes in rows]},
                      f, indent=1)  # fmt: skip


if __name__ == "__main__":
    main()
