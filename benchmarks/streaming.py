"""Streaming evaluation at growing input lengths: peak resident memory and bytes/s of
``memtx evaluate RUN --input FILE --max-bytes N`` (one stream, memory carried, flat memory expected).

    python benchmarks/streaming.py RUN_DIR FILE [--sizes 16384,131072,1048576]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("input")
    parser.add_argument("--sizes", default="16384,131072,1048576")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "streaming_xl.json"))
    a = parser.parse_args()
    rows = []
    for n in map(int, a.sizes.split(",")):
        cmd = [sys.executable, "-m", "memtx.cli", "evaluate", a.run_dir, "--input", a.input, "--max-bytes", str(n),
               "--json", "--no-progress"]  # fmt: skip
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        out = json.loads(proc.stdout.read().strip().splitlines()[-1])
        rss = round(usage.ru_maxrss / 1024, 1)
        rows.append({"bytes": n, "scored": out["bytes"], "bpc": out["bpc"], "wall_s": round(wall, 2),
                     "bytes_per_s": round(out["bytes"] / wall, 1), "peak_rss_mb": rss})  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    config = json.loads((Path(a.run_dir) / "config.json").read_text())
    result = {"run_dir": a.run_dir, "model": config["model"], "segment_len": config["segment_len"], "input": a.input,
              "rows": rows, "machine": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
              "note": "wall time includes process start and model load (~2 s)"}  # fmt: skip
    Path(a.out).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
