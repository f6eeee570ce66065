"""How a trained model's carried memory grows with the segments it has read: the norm of every state tensor
(ARMT's A and z per layer, RMT's memory tokens, the XL cache) after 1, 2, 4, ... segments of BABILong test
samples, against the segment counts the model was trained on.

    python benchmarks/memory_drift.py RUN_DIR [--length 64k] [--samples 4] [--out FILE]

A memory whose norm keeps growing past the trained counts feeds the layers inputs they never saw in training:
ARMT's read ``A phi(q) / (z . phi(q))`` scales with A once z has saturated.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import sys
from pathlib import Path

import torch

from memtx.evaluation.reasoning import prompt_rows
from memtx.tasks.babilong import Babilong, parse_length
from memtx.training.checkpoint import load_run
from memtx.training.trainer import babilong_codec


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--task", default="qa1")
    parser.add_argument("--length", default="64k", help="sample length in bytes (0k, 16k, 64k, 1M, ...)")
    parser.add_argument("--samples", type=int, default=4, help="rows streamed together; norms are their mean")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--babi-dir", default=None, help="bAbI v1.2 folder (default: shared/data/babi)")
    parser.add_argument("--noise-dir", default=None, help="folder of books (default: shared/data/gutenberg)")
    parser.add_argument("--out", default="", help="JSON path ('' = RUN_DIR/memory_drift.json); a plot goes beside")
    a = parser.parse_args(argv)
    cfg, model = load_run(a.run_dir)
    model.eval()
    T = cfg.segment_len
    codec = babilong_codec(Path(a.run_dir), cfg)
    gen = Babilong(a.task, "test", babi_dir=a.babi_dir, noise_dir=a.noise_dir, count_tokens=codec.count)
    samples = list(gen.samples(parse_length(a.length), a.samples, a.seed))
    streams = [itertools.chain.from_iterable(r) for r in prompt_rows(samples, T, codec)]
    marks, rows, state, n = {2**i for i in range(24)}, [], None, 0
    with torch.no_grad():
        while True:
            segment = [list(itertools.islice(s, T)) for s in streams]
            if len(segment[0]) < T:
                break
            state = model(torch.tensor(segment), state).state
            n += 1
            if n in marks:
                norms = {k: round(float(t.flatten(1).norm(dim=1).mean()), 4) for k, t in state.to_tensors().items()}
                rows.append({"segments": n, "norms": norms})
                print(json.dumps(rows[-1]), flush=True)
    trained = max(cfg.curriculum) if cfg.curriculum else 1
    out = Path(a.out) if a.out else Path(a.run_dir) / "memory_drift.json"
    result = {"run_dir": a.run_dir, "memory": cfg.model.memory, "segment_len": T, "trained_segments": trained,
              "task": a.task, "length": a.length, "samples": a.samples, "rows": rows,
              "machine": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__}  # fmt: skip
    out.write_text(json.dumps(result, indent=1) + "\n")
    plot(result, out.with_suffix(".png"))
    print(f"wrote {out}")
    return 0


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    segments = [r["segments"] for r in result["rows"]]
    for name in result["rows"][0]["norms"]:
        ax.plot(segments, [r["norms"][name] for r in result["rows"]], marker="o", ms=3, label=name)
    ax.axvline(result["trained_segments"], color="grey", ls="--", lw=1, label="trained segments")
    ax.set(xscale="log", yscale="log", xlabel="segments read", ylabel="state norm (mean over rows)",
           title=f"{Path(result['run_dir']).name}: memory state vs segments read")  # fmt: skip
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
