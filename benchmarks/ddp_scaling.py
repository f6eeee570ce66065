"""Data-parallel check on this machine: the same run with 1 process and with N processes under torchrun (DDP,
gloo on CPU), same global batch. Reports the largest per-step difference of the training loss and the median
training tokens/s of each.

    python benchmarks/ddp_scaling.py [--preset quickstart] [--steps 60] [--procs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import torch


def run(preset: str, steps: int, procs: int, out: Path, parallel: str) -> tuple[dict, list[float]]:
    args = ["-m", "memtx.cli", "train", preset, "--out", str(out), "--max-steps", str(steps), "--log-every", "1",
            "--eval-every", "0", "--sample-len", "0", "--checkpoint-every", "100000", "--no-progress", "--json",
            "--model.dropout", "0", "--parallel", parallel]  # fmt: skip
    launcher = [sys.executable] if procs == 1 else [str(Path(sys.executable).with_name("torchrun")), "--standalone",
                                                    f"--nproc-per-node={procs}"]  # fmt: skip
    proc = subprocess.run(launcher + args, capture_output=True, text=True, check=True)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return json.loads(proc.stdout.strip().splitlines()[-1]), [r["train_bpc"] for r in rows if "train_bpc" in r]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="quickstart")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--parallel", default="ddp", choices=["ddp", "fsdp"])
    parser.add_argument("--out", default=None)
    a = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="memtx-ddp-"))
    one, loss1 = run(a.preset, a.steps, 1, tmp / "one", a.parallel)
    many, loss_n = run(a.preset, a.steps, a.procs, tmp / "many", a.parallel)
    diffs = [abs(x - y) for x, y in zip(loss1, loss_n, strict=True)]
    result = {
        "preset": a.preset,
        "steps": a.steps,
        "procs": a.procs,
        "parallel": a.parallel,
        "loss_max_abs_diff_bpc": max(diffs),
        "loss_first_steps": {"one": loss1[:3], "many": loss_n[:3]},
        "valid_bpc": {"one": one["valid_bpc"], "many": many["valid_bpc"]},
        "tokens_per_s_median": {"one": one["tokens_per_s_median"], "many": many["tokens_per_s_median"]},
        "speedup": round(many["tokens_per_s_median"] / one["tokens_per_s_median"], 3),
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
    }
    out = Path(a.out or Path(__file__).parent / "results" / f"ddp_{a.preset}_{a.parallel}_{a.procs}procs.json")
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
