"""A committed golden run: the losses of a deterministic 20-step CPU run. Fails on unexplained drift.

Regenerate (and explain why in the commit) with: MEMTX_UPDATE_GOLDEN=1 pytest tests/training/test_golden.py
"""

import json
import os
from dataclasses import replace
from pathlib import Path

from helpers import tiny_run

from memtx.training.trainer import train

GOLDEN = Path(__file__).with_name("golden_tiny_run.json")


def test_golden_losses(tmp_path, corpus_file):
    cfg = tiny_run(str(corpus_file), max_steps=20)
    cfg = replace(cfg, model=replace(cfg.model, dropout=0.0))
    train(cfg, tmp_path / "run", progress=False)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    got = [r["train_bpc"] for r in records if "train_bpc" in r]
    if os.environ.get("MEMTX_UPDATE_GOLDEN"):
        GOLDEN.write_text(json.dumps({"train_bpc": got}, indent=1) + "\n")
    want = json.loads(GOLDEN.read_text())["train_bpc"]
    assert len(got) == len(want) == 20
    for step, (g, w) in enumerate(zip(got, want, strict=True), 1):
        assert abs(g - w) <= 1e-4 * abs(w), f"step {step}: {g} != golden {w}"
