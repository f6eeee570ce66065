"""BABILong accuracy by task x length for a byte-level model (Kuratov et al. 2024).

Each test sample streams through the segment loop one sentence at a time (``models/generation.prefill``: the
model's memory is the only thing that grows with nothing), then the model answers greedily after
``"\\nA: "`` until a newline (at most ``MAX_ANSWER`` bytes), scored by ``tasks.babilong.score``. The prompt is
left-padded with NUL so that it ends at the same place in its segment as the training rows do (they end with a
typical ``ALIGN``-byte answer), so the question sits where training put it.

Accuracy comes with a Wilson 95% interval. Peak resident memory is read after each cell (the process maximum,
so with lengths in increasing order it shows whether memory grows with the length).
"""

from __future__ import annotations

import math
import resource
from collections.abc import Iterator

import torch
from tqdm import tqdm

from memtx.models.generation import generate, prefill
from memtx.tasks.babilong import Babilong, Sample, parse_length
from memtx.tasks.babilong_batches import PAD, prompt_suffix

MAX_ANSWER = 16
ALIGN = 8  # bytes of a typical answer and its newline, as at the end of a training row


def wilson(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion."""
    if n == 0:
        return 0.0, 1.0
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def prompt_chunks(sample: Sample, segment_len: int) -> Iterator[list[int]]:
    """The byte ids of pad + context + question cue, one sentence at a time."""
    suffix = prompt_suffix(sample.question).encode()
    total = sample.length + len(suffix)  # sample.length counts UTF-8 bytes
    pad = (-(total + ALIGN)) % segment_len
    if pad:
        yield [PAD] * pad
    for sentence in sample.chunks():
        yield list(sentence.encode())
    yield list(suffix)


@torch.no_grad()
def answer(model, sample: Sample, segment_len: int) -> str:
    """The model's greedy answer to one sample (up to the first newline)."""
    state, tail = prefill(model, prompt_chunks(sample, segment_len), segment_len)
    out = generate(model, tail, MAX_ANSWER, temperature=0, segment_len=segment_len, state=state)
    text = bytes(out[0].tolist()).decode("utf-8", "replace")
    return text.split("\n", 1)[0].strip()


def evaluate_babilong(
    model,
    segment_len: int,
    tasks: list[str],
    lengths: list[str],
    n_samples: int,
    seed: int = 0,
    babi_dir: str | None = None,
    noise_dir: str | None = None,
    progress: bool = False,
) -> list[dict]:
    """One record per (task, length): accuracy, Wilson 95% interval, samples, peak RSS; lengths in the given
    order (ascending, for a meaningful memory column)."""
    rows = []
    bar = tqdm(total=len(tasks) * len(lengths) * n_samples, unit="sample", disable=None if progress else True)
    for task in tasks:
        gen = Babilong(task, "test", babi_dir=babi_dir, noise_dir=noise_dir)
        for length in lengths:
            bar.set_description(f"{task} {length}")
            correct = n = 0
            examples = []
            for sample in gen.samples(length, n_samples, seed):
                predicted = answer(model, sample, segment_len)
                ok = sample.score(predicted)
                correct, n = correct + ok, n + 1
                if len(examples) < 3:
                    examples.append({"question": sample.question, "answer": sample.answer, "predicted": predicted})
                bar.update(1)
            low, high = wilson(correct, n)
            rows.append({
                "task": task, "length": length, "tokens": parse_length(length), "samples": n, "correct": correct,
                "accuracy": correct / n if n else float("nan"), "ci95": [low, high],
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                "examples": examples,
            })  # fmt: skip
    bar.close()
    return rows


def plot_heatmap(rows: list[dict], png_path, title: str):
    """Task x length accuracy heatmap in the style of the BABILong paper's figures."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(r["task"] for r in rows))
    lengths = list(dict.fromkeys(r["length"] for r in rows))
    grid = [[next((r["accuracy"] * 100 for r in rows if r["task"] == t and r["length"] == n), float("nan"))
             for n in lengths] for t in tasks]  # fmt: skip
    fig, ax = plt.subplots(figsize=(1.1 * len(lengths) + 2, 0.6 * len(tasks) + 1.6))
    im = ax.imshow(grid, cmap="RdYlGn", vmin=0, vmax=100, aspect="auto")
    for i, row in enumerate(grid):
        for j, v in enumerate(row):
            if v == v:
                ax.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize=10)
    ax.set_xticks(range(len(lengths)), lengths)
    ax.set_yticks(range(len(tasks)), tasks)
    ax.set_xlabel("context length (tokens = bytes)")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, label="accuracy (%)")
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)
    plt.close(fig)
    return png_path
