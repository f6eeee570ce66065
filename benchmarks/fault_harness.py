"""Kill/resume fault harness: SIGKILL a training run at random moments, resume it each time, and check that the
final weights and loss curve are identical to an uninterrupted run.

    python benchmarks/fault_harness.py --trials 20            # writes benchmarks/results/fault_harness.json

Each trial starts (or resumes) the run, kills it with SIGKILL after a random delay, and checks that the next
start resumes from the latest good checkpoint. After the last kill the run is resumed to completion.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import safetensors.torch
import torch

TINY = [
    "--model.n-layers", "2", "--model.d-model", "32", "--model.n-heads", "2", "--model.n-persistent", "8",
    "--model.span", "32", "--model.dropout", "0.1", "--batch-size", "4", "--segment-len", "32",
    "--checkpoint-every", "7", "--log-every", "1", "--sample-len", "0", "--eval-batch-size", "2",
    "--optim.name", "adagrad", "--optim.lr", "0.05", "--optim.warmup", "10", "--no-progress",
]  # fmt: skip


def command(corpus: Path, out: Path, steps: int, resume: bool) -> list[str]:
    cmd = [sys.executable, "-m", "memtx.cli", "train", "--data.corpus", str(corpus), "--out", str(out)]
    return cmd + TINY + ["--max-steps", str(steps)] + (["--resume"] if resume else [])


def losses(run: Path) -> list[tuple[int, float]]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [(r["step"], r["train_bpc"]) for r in rows if "train_bpc" in r]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--steps", type=int, default=5000, help="long enough that every trial is killed mid-run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-delay", type=float, default=1.0, help="seconds after start before a kill")
    parser.add_argument("--max-delay", type=float, default=4.0)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "fault_harness.json"))
    args = parser.parse_args()
    rng = random.Random(args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="memtx-fault-"))
    corpus = tmp / "corpus.txt"
    words = "memory persistent vectors attention cache segment stream byte layer softmax".split()
    corpus.write_text(" ".join(rng.choice(words) for _ in range(20000)))

    t0 = time.perf_counter()
    subprocess.run(command(corpus, tmp / "reference", args.steps, False), check=True, capture_output=True)
    reference_s = time.perf_counter() - t0

    run = tmp / "faulty"
    trials = []

    def latest_checkpoint() -> int:
        dirs = sorted((run / "checkpoints").glob("step_*")) if (run / "checkpoints").is_dir() else []
        return int(dirs[-1].name.removeprefix("step_")) if dirs else 0

    for trial in range(args.trials):
        started = (run / "config.json").exists()
        before = latest_checkpoint()
        proc = subprocess.Popen(
            command(corpus, run, args.steps, started), stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        delay = rng.uniform(args.min_delay, args.max_delay)
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
        code = proc.wait()
        err = proc.stderr.read().decode()
        ok = code in (0, -signal.SIGKILL)
        after = latest_checkpoint()
        trials.append({"trial": trial, "delay_s": round(delay, 2), "exit": code, "ok": ok, "checkpoint_before": before,
                       "checkpoint_after": after, "killed_mid_run": code == -signal.SIGKILL and after < args.steps,
                       "stderr_tail": err.strip().splitlines()[-1:] if not ok else []})  # fmt: skip
        print(
            f"trial {trial:2d}: killed after {delay:.2f}s (exit {code}); checkpoint step {before} -> {after}",
            flush=True,
        )
    final = subprocess.run(command(corpus, run, args.steps, True), capture_output=True)
    ref_w = safetensors.torch.load_file(str(tmp / "reference" / "model.safetensors"))
    got_w = safetensors.torch.load_file(str(run / "model.safetensors"))
    weights_identical = ref_w.keys() == got_w.keys() and all(torch.equal(ref_w[k], got_w[k]) for k in ref_w)
    ref_l, got_l = losses(tmp / "reference"), losses(run)
    result = {
        "trials": args.trials,
        "survived": sum(t["ok"] for t in trials) if final.returncode == 0 else 0,
        "killed_mid_run": sum(t["killed_mid_run"] for t in trials),
        "final_exit": final.returncode,
        "final_weights_identical": weights_identical,
        "loss_curve_identical": ref_l == got_l,
        "loss_curve_max_abs_diff": max((abs(a[1] - b[1]) for a, b in zip(ref_l, got_l)), default=None),
        "steps": args.steps,
        "reference_run_s": round(reference_s, 1),
        "trial_log": trials,
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "trial_log"}))
    return 0 if weights_identical and ref_l == got_l and result["survived"] == args.trials else 1


if __name__ == "__main__":
    sys.exit(main())
