"""How much of a BABILong qa1 model's accuracy is the "answer the room mentioned last" shortcut: accuracy on the
test questions that shortcut answers right, and on the others (binding people to rooms); and accuracy by the
number of facts before the question (``by_facts``: 2 for a story's first question, up to 10); and by how many facts
came after the asked person's last move (``by_moves_ago``: 0 = the last fact moved them), which separates a model
that finds the person's move wherever it is from one that only looks at the last facts.

    python benchmarks/shortcut_split.py RUN_DIR --length 0k --samples 200
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import torch

from memtx.evaluation.reasoning import answers
from memtx.tasks.babilong import TASK_LABELS, Babilong
from memtx.training.checkpoint import load_run
from memtx.training.trainer import babilong_codec


def last_room(facts: tuple[str, ...]) -> str | None:
    text = " ".join(facts)
    found = [(m.start(), r) for r in TASK_LABELS["qa1"] for m in re.finditer(rf"\b{r}\b", text)]
    return max(found)[1] if found else None


def moves_ago(facts: tuple[str, ...], question: str) -> int:
    """Facts after the last one that names the person a qa1 question asks about ("Where is Mary?")."""
    person = question.rstrip("?").split()[-1]
    return next(i for i, fact in enumerate(reversed(facts)) if fact.split()[0] == person)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--length", default="0k")
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=25)
    a = parser.parse_args(argv)
    cfg, model = load_run(a.run_dir)
    codec = babilong_codec(Path(a.run_dir), cfg)
    samples = list(Babilong("qa1", "test", count_tokens=codec.count).samples(a.length, a.samples, seed=0))
    split = {"shortcut_right": [0, 0], "shortcut_wrong": [0, 0]}
    by_facts: dict[int, list[int]] = {}
    by_ago: dict[int, list[int]] = {}
    with torch.no_grad():
        for i in range(0, len(samples), a.batch_size):
            batch = samples[i : i + a.batch_size]
            for s, predicted in zip(batch, answers(model, batch, cfg.segment_len, codec), strict=True):
                kind = "shortcut_right" if last_room(s.facts) == s.answer else "shortcut_wrong"
                ago = by_ago.setdefault(moves_ago(s.facts, s.question), [0, 0])
                for cell in (split[kind], by_facts.setdefault(len(s.facts), [0, 0]), ago):
                    cell[0] += s.score(predicted)
                    cell[1] += 1
    out = {"run_dir": a.run_dir, "length": a.length, "samples": len(samples)}
    out.update({k: {"correct": c, "n": n, "accuracy": round(c / max(n, 1), 3)} for k, (c, n) in split.items()})
    for name, table in (("by_facts", by_facts), ("by_moves_ago", by_ago)):
        out[name] = {n: {"correct": c, "n": t, "accuracy": round(c / t, 3)} for n, (c, t) in sorted(table.items())}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
