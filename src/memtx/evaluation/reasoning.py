"""BABILong accuracy by task x length for a byte-level or BPE model (Kuratov et al. 2024).

Test samples stream through the segment loop in batches, one sentence at a time (``models/generation.prefill``:
nothing grows with the length but the model's memory, which is flat), then the model answers greedily after
``"\\nA: "`` until a newline (at most ``MAX_ANSWER`` tokens), scored by ``tasks.babilong.score``. The prompt is
left-padded with id 0 (to the longest prompt of its batch) so that it ends ``ANSWER_ROOM`` tokens before a segment
boundary, where training rows put the end of the cue (``tasks/babilong_batches.py``).

Accuracy comes with a Wilson 95% interval. Peak resident memory is read after each cell (the process maximum,
so with lengths in increasing order it shows whether memory grows with the length).
"""

from __future__ import annotations

import itertools
import math
import resource
from collections.abc import Iterator, Sequence

import torch
from tqdm import tqdm

from memtx.data.char import BYTES
from memtx.models.generation import generate, prefill
from memtx.runtime import peak_gpu
from memtx.tasks.babilong import Sample, open_babilong, parse_length
from memtx.tasks.babilong_batches import ANSWER_ROOM, PAD, prompt_suffix
from memtx.tasks.synthetic import IGNORE_INDEX

MAX_ANSWER = 16


def wilson(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion."""
    if n == 0:
        return 0.0, 1.0
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def prompt_rows(samples: Sequence[Sample], segment_len: int, codec=BYTES) -> list[Iterator[list[int]]]:
    """For a batch of samples, the token ids of pad + context + question cue, one sentence at a time: each row is
    left-padded to the same length, so that every prompt plus a typical answer ends at a segment boundary."""
    suffixes = [codec.encode(prompt_suffix(s.question)) for s in samples]
    totals = [s.length + len(x) for s, x in zip(samples, suffixes, strict=True)]  # sample.length counts tokens
    width = max(totals)
    width += (-(width + ANSWER_ROOM)) % segment_len
    return [_row(s, x, width - t, codec) for s, x, t in zip(samples, suffixes, totals, strict=True)]


def _row(sample: Sample, suffix: list[int], pad: int, codec) -> Iterator[list[int]]:
    if pad:
        yield [PAD] * pad
    for sentence in sample.chunks():
        yield codec.encode(sentence)
    yield suffix


def prompt_chunks(sample: Sample, segment_len: int, codec=BYTES) -> Iterator[list[int]]:
    """The prompt of one sample (``prompt_rows`` of a batch of one)."""
    return prompt_rows([sample], segment_len, codec)[0]


@torch.no_grad()
def answers(model, samples: Sequence[Sample], segment_len: int, codec=BYTES) -> list[str]:
    """The model's greedy answers to a batch of samples (each up to its first newline)."""
    state, tail = prefill(model, prompt_rows(samples, segment_len, codec), segment_len)
    out = generate(model, tail, MAX_ANSWER, temperature=0, segment_len=segment_len, state=state)
    texts = [codec.decode(row.tolist()) for row in out]
    return [t.split("\n", 1)[0].strip() for t in texts]


def evaluate_babilong(
    model,
    segment_len: int,
    tasks: list[str],
    lengths: list[str],
    n_samples: int | Sequence[int],
    seed: int = 0,
    babi_dir: str | None = None,
    noise_dir: str | None = None,
    progress: bool = False,
    batch_size: int = 16,
    codec=BYTES,
    split: str = "test",
    variant: str = "en",
) -> Iterator[dict]:
    """One record per (task, length), yielded as each cell finishes: accuracy, Wilson 95% interval, samples, peak
    RSS. ``n_samples`` is one count for every cell or one per length. Lengths run in the given order (ascending,
    for a meaningful memory column); samples are answered ``batch_size`` at a time. ``codec``: the model's tokens
    (``char.BYTES`` or a ``bpe.BpeTokenizer``), in which lengths are counted. ``split``: bAbI's test stories, or
    the valid ones held out of the train file (of ``variant``) for choices made in training."""
    counts = [n_samples] * len(lengths) if isinstance(n_samples, int) else list(n_samples)
    if len(counts) != len(lengths):
        raise ValueError(f"{len(counts)} sample counts for {len(lengths)} lengths")
    bar = tqdm(total=len(tasks) * sum(counts), unit="sample", disable=None if progress else True)
    for task in tasks:
        gen = open_babilong(task, split, variant=variant, babi_dir=babi_dir, noise_dir=noise_dir,
                            count_tokens=codec.count)  # fmt: skip
        for length, count in zip(lengths, counts, strict=True):
            bar.set_description(f"{task} {length}")
            correct = n = 0
            examples = []
            stream = gen.samples(length, count, seed)
            while batch := list(itertools.islice(stream, batch_size)):
                for sample, predicted in zip(batch, answers(model, batch, segment_len, codec), strict=True):
                    ok = sample.score(predicted)
                    correct, n = correct + ok, n + 1
                    if len(examples) < 3:
                        examples.append({"question": sample.question, "answer": sample.answer, "predicted": predicted})
                bar.update(len(batch))
            low, high = wilson(correct, n)
            yield {
                "task": task, "length": length, "tokens": parse_length(length), "samples": n, "correct": correct,
                "accuracy": correct / n if n else float("nan"), "ci95": [low, high],
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                **peak_gpu(model.device),  # process maxima, as the RSS
                "examples": examples,
            }  # fmt: skip
    bar.close()


@torch.no_grad()
def row_accuracy(model, batches, n_rows: int) -> dict:
    """Teacher-forced accuracy on training-style rows (``BabilongBatches`` of one segment, e.g. with fillers, or
    ``ask="far"``, of the valid stories): a row is right when every target of its final answer (the answer's
    tokens and newline, in the row's last ``ANSWER_ROOM + 1`` columns) is the model's argmax. Draws batches until
    ``n_rows`` rows (whole batches)."""
    correct = n = 0
    while n < n_rows:
        batch = batches.next_batch(1)
        out = model(batch.x.to(model.device), None, batch.y.to(model.device), scores="targets")
        tail = batch.y[:, -(ANSWER_ROOM + 1) :].to(model.device) != IGNORE_INDEX
        wrong = tail & ~out.hits[:, -(ANSWER_ROOM + 1) :]
        correct += int((~wrong.any(1) & tail.any(1)).sum())
        n += len(batch.x)
    low, high = wilson(correct, n)
    return {"correct": correct, "samples": n, "accuracy": correct / max(n, 1), "ci95": [low, high]}


def plot_heatmap(rows: list[dict], png_path, title: str, unit: str = "tokens = bytes"):
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
    ax.set_xlabel(f"context length ({unit})")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, label="accuracy (%)")
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)
    plt.close(fig)
    return png_path
