"""Synthetic memory tasks of the RMT paper (Bulatov et al. 2022, section 4.1): copy, reverse and associative
retrieval, laid out over S segments of T tokens so that the answer needs what earlier segments held.

Samples are generated on the fly and are a pure function of (seed, batch index): resuming at batch k gives the
same batches, and evaluation draws from a separate seed stream. Token ids: symbols ``0..K-1``, then ``SEP = K``
and ``FILL = K+1`` (``vocab_size = K+2``). Targets outside the answer are -100 (ignored by the loss).

- ``copy``    ``[c_1..c_n ; SEP ; c_1..c_n]`` with ``n = S*T/2``: the content fills the first S/2 segments, the
  copy the last S/2; every copied symbol is a target.
- ``reverse`` the same with the copy reversed.
- ``assoc``   P key-value pairs (distinct keys) at random sorted places in the first S-1 segments, the rest FILL;
  the last segment ends with ``SEP`` and queries ``k v k v ...`` of the pairs in random order; every queried
  value is a target (as many queries as fit in the last segment, at most P).
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import numpy as np
import torch

from memtx.errors import ConfigError

IGNORE_INDEX = -100
TASKS = ("copy", "reverse", "assoc")
Task = Literal["copy", "reverse", "assoc"]
_EVAL_STREAM = 1_000_003  # seed namespace of evaluation samples (disjoint from training batch indices)


class TaskBatch(NamedTuple):
    """x, y int64 (B, S*T); ``reset`` is always True: every sample starts from fresh memory."""

    x: torch.Tensor
    y: torch.Tensor
    reset: bool


def vocab_size(symbols: int) -> int:
    return symbols + 2


def check_task(task: str, symbols: int, pairs: int, segments: int, segment_len: int) -> None:
    """One-line ConfigError for a task that cannot be laid out."""
    if task not in TASKS:
        raise ConfigError(f"unknown task {task!r}: choose one of {', '.join(TASKS)}")
    if symbols < 2:
        raise ConfigError(f"data.symbols must be >= 2, got {symbols}")
    n = segments * segment_len
    if task in ("copy", "reverse") and n < 2:
        raise ConfigError(f"{task} needs at least 2 tokens per sample, got {segments} x {segment_len}")
    if task == "assoc":
        if segments < 2:
            raise ConfigError("assoc needs >= 2 segments: the pairs live in the first S-1, the queries in the last")
        if pairs < 1 or pairs > symbols:
            raise ConfigError(
                f"data.pairs must be in [1, data.symbols={symbols}] (keys are distinct), got {pairs}: "
                "lower --data.pairs or raise --data.symbols"
            )
        if 2 * pairs > (segments - 1) * segment_len:
            raise ConfigError(
                f"{pairs} pairs need {2 * pairs} tokens, more than the {(segments - 1) * segment_len} of the first "
                f"{segments - 1} segments: raise --segment-len or lower --data.pairs"
            )
        if segment_len < 3:
            raise ConfigError("assoc needs --segment-len >= 3 (SEP, one key and its value)")


def make_sample(task: Task, rng: np.random.Generator, symbols: int, pairs: int, segments: int, segment_len: int):
    """One sample (x, y) as int64 numpy arrays of length S*T."""
    n = segments * segment_len
    sep, fill = symbols, symbols + 1
    if task in ("copy", "reverse"):
        half = n // 2
        content = rng.integers(0, symbols, size=half)
        answer = content if task == "copy" else content[::-1]
        seq = np.concatenate([content, [sep], answer])[: n + 1]
        if len(seq) < n + 1:  # odd n: one trailing fill
            seq = np.concatenate([seq, [fill]])
        x, y = seq[:-1].copy(), seq[1:].copy()
        y[:half] = IGNORE_INDEX  # targets: the answer symbols only
        y[half + len(answer) :] = IGNORE_INDEX
        return x, y
    keys = rng.choice(symbols, size=pairs, replace=False)
    values = rng.integers(0, symbols, size=pairs)
    body = np.full(n - segment_len, fill, dtype=np.int64)
    slots = (n - segment_len) // 2  # pairs sit at even offsets so they never overlap
    where = np.sort(rng.choice(slots, size=pairs, replace=False)) * 2
    body[where], body[where + 1] = keys, values
    n_queries = min(pairs, (segment_len - 1) // 2)
    asked = rng.permutation(pairs)[:n_queries]
    query = np.stack([keys[asked], values[asked]], axis=1).reshape(-1)
    last = np.full(segment_len + 1, fill, dtype=np.int64)  # one more: the target after the last input
    last[segment_len + 1 - 2 * n_queries - 1] = sep
    last[segment_len + 1 - 2 * n_queries :] = query
    seq = np.concatenate([body, last])
    x, y = seq[:-1].copy(), np.full(n, IGNORE_INDEX, dtype=np.int64)
    value_at = n + 2 - 2 * n_queries + 2 * np.arange(n_queries)  # positions of the queried values in seq
    y[value_at - 1] = seq[value_at]
    return x, y


class TaskBatches:
    """Training batches of a task: batch k is a pure function of (seed, k). Same interface as TrainStreams."""

    def __init__(self, task: Task, batch_size: int, segment_len: int, symbols: int, pairs: int, seed: int) -> None:
        self.task, self.batch_size, self.segment_len = task, batch_size, segment_len
        self.symbols, self.pairs, self.seed = symbols, pairs, seed
        self.index = 0

    def next_batch(self, segments: int = 1) -> TaskBatch:
        check_task(self.task, self.symbols, self.pairs, segments, self.segment_len)
        rng = np.random.default_rng([self.seed, self.index])
        self.index += 1
        return self._batch(rng, self.batch_size, segments)

    def _batch(self, rng: np.random.Generator, rows: int, segments: int) -> TaskBatch:
        xs, ys = zip(
            *(make_sample(self.task, rng, self.symbols, self.pairs, segments, self.segment_len) for _ in range(rows))
        )
        return TaskBatch(torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys)), True)

    def eval_batches(self, n_samples: int, segments: int, batch_size: int):
        """Held-out samples (their own seed stream), ``batch_size`` at a time; the same for every call."""
        check_task(self.task, self.symbols, self.pairs, segments, self.segment_len)
        rng = np.random.default_rng([self.seed, _EVAL_STREAM])
        for start in range(0, n_samples, batch_size):
            yield self._batch(rng, min(batch_size, n_samples - start), segments)

    def state_dict(self) -> dict[str, int]:
        return {"index": self.index}

    def load_state_dict(self, state: dict) -> None:
        index = state.get("index")
        if not (isinstance(index, int) and index >= 0):
            raise ValueError(f"invalid TaskBatches state {state!r}: index must be an integer >= 0")
        self.index = index
