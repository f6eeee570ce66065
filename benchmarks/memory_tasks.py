"""Synthetic memory tasks side by side: train each preset for the same time (one after the other, so they never
share the CPU), then record held-out accuracy, throughput and the size of each memory state.

    python benchmarks/memory_tasks.py copy-rmt copy-armt copy-xl --max-time 300
    python benchmarks/memory_tasks.py assoc-rmt assoc-armt --pairs 2 4 8 16 --max-time 180

Writes benchmarks/results/memory_tasks-<first preset>.json (one record per run) and keeps the run folders in
runs/memory_tasks/.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from memtx.models.config import ModelConfig
from memtx.presets import PRESETS

RESULTS = Path(__file__).parent / "results"


def state_floats(cfg: ModelConfig) -> int:
    """Floats carried from one segment to the next, per sample."""
    if cfg.memory == "rmt":
        return cfg.mem_tokens * cfg.d_model
    if cfg.memory == "armt":
        key = 2 * 3 * cfg.mem_dim // cfg.mem_heads
        return cfg.n_layers * cfg.mem_heads * key * (cfg.d_model // cfg.mem_heads + 1)
    return cfg.n_layers * (cfg.xl_len or cfg.span) * cfg.d_model


def run(preset: str, max_time: float, seed: int, extra: list[str], tag: str) -> dict:
    out = Path("runs/memory_tasks") / f"{preset}{tag}-s{seed}"
    cmd = [sys.executable, "-m", "memtx.cli", "train", preset, "--out", str(out), "--max-time", str(max_time)]
    cmd += ["--seed", str(seed), "--no-progress", "--json", *extra]
    print(" ".join(cmd), flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode:
        raise SystemExit(f"{preset} failed:\n{proc.stderr[-2000:]}")
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    cfg = PRESETS[preset][1]
    record = {"preset": preset, "args": extra, "command": " ".join(cmd[2:]), "state_floats": state_floats(cfg.model)}
    record.update({k: summary[k] for k in summary if k not in ("plot", "run_dir")})
    print(json.dumps(record), flush=True)
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("presets", nargs="+")
    parser.add_argument("--max-time", type=float, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pairs", type=int, nargs="*", default=[], help="assoc: sweep the number of pairs")
    args = parser.parse_args()
    records = []
    for pairs in args.pairs or [None]:
        for preset in args.presets:
            extra = ["--data.pairs", str(pairs)] if pairs else []
            records.append(run(preset, args.max_time, args.seed, extra, f"-p{pairs}" if pairs else ""))
            RESULTS.mkdir(exist_ok=True)
            path = RESULTS / f"memory_tasks-{args.presets[0]}{'-pairs' if args.pairs else ''}.json"
            path.write_text(json.dumps(records, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
