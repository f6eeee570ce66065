"""Teacher-forced accuracy of BABILong qa1 window models (phase A / fill runs) on training-style rows of the *valid*
stories, with and without fillers, asking about anyone named or about the person whose last move is the oldest
(``far``: the room mentioned last is then wrong unless one person moved). A model that reads the last facts by
position answers ``far`` with fillers well below ``anyone`` without them; one that binds people to rooms does not.

    python -m benchmarks.window_screen RUN_DIR [RUN_DIR ...] [--rows 800] [--out screen.json]

Session 31 asked whether this screen, taken right after phase A, tells which As the filler phase lifts past 90%
(it would spare the route a 1,000-step probe per bad A): it does not (results README, "What does not predict a good
phase A").
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from memtx.data.bpe import BpeTokenizer
from memtx.evaluation.reasoning import row_accuracy
from memtx.tasks.babilong_batches import BabilongBatches
from memtx.training.checkpoint import load_run

CELLS = {"f0-anyone": (0, "anyone"), "f0-far": (0, "far"), "f2-anyone": (2, "anyone"), "f2-far": (2, "far")}


def screen(run: Path, rows: int) -> dict[str, dict]:
    cfg, model = load_run(run)
    d, codec = cfg.data, BpeTokenizer.load(run / "tokenizer.json")
    out = {}
    for name, (fillers, ask) in CELLS.items():
        batches = BabilongBatches(d.babi_tasks, 16, cfg.segment_len, seed=0, babi_dir=d.babi_dir,
                                  variant=d.babi_variant, noise=False, fillers=fillers, ask=ask, trim_padding=True,
                                  split="valid", codec=codec)  # fmt: skip
        out[name] = row_accuracy(model, batches, rows)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--rows", type=int, default=800, help="rows per cell (whole batches of 16)")
    ap.add_argument("--out", type=Path, help="JSON of every run's cells")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    results = {}
    for run in a.runs:
        results[str(run)] = cells = screen(run, a.rows)
        print(run, "  ".join(f"{k} {v['accuracy']:.3f}" for k, v in cells.items()), flush=True)
    if a.out:
        a.out.write_text(json.dumps({"rows": a.rows, "runs": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
