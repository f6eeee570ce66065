"""metrics.jsonl (one JSON object per line) and the learning-curve plot made from it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class MetricsLog:
    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, **record: Any) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")


def read_metrics(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_learning_curve(metrics_path: Path, png_path: Path, title: str) -> Path | None:
    """Train and validation bits per byte (perplexity for word runs) against steps; None when nothing to plot."""
    records = read_metrics(metrics_path)
    key, label = ("ppl", "perplexity") if any("train_ppl" in r for r in records) else ("bpc", "bits per byte")
    train = [(r["step"], r[f"train_{key}"]) for r in records if f"train_{key}" in r]
    valid = [(r["step"], r[f"valid_{key}"]) for r in records if f"valid_{key}" in r]
    if not train and not valid:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    if train:
        ax.plot(*zip(*train), label="train (running)", lw=1.2)
    if valid:
        ax.plot(*zip(*valid), "o-", label="valid (exact)", lw=1.5)
    ax.set_xlabel("step")
    ax.set_ylabel(label)
    if key == "ppl":
        ax.set_yscale("log")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)
    plt.close(fig)
    return png_path
