"""BABILong training batches for byte-level models: each row is one sample laid out as

    [pad ...] context  "\\nQ: " question "\\nA: " answer "\\n"

filling exactly S*T+1 bytes (left-padded with NUL), the context generated at the length that fills the row
(within one sentence; ``tasks/babilong.py``). Only the answer and its newline are targets. Batch k is a pure
function of (seed, k), so resumed runs see the same batches. Train samples use bAbI train stories and the train
books; evaluation (``evaluation/reasoning.py``) the test stories and the test books.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np
import torch

from memtx.errors import ConfigError
from memtx.tasks.babilong import Babilong
from memtx.tasks.synthetic import IGNORE_INDEX, TaskBatch

PAD = 0
QUESTION, ANSWER = "\nQ: ", "\nA: "


def prompt_suffix(question: str) -> str:
    """What follows the context: the question, then the cue after which the model answers."""
    return f"{QUESTION}{question}{ANSWER}"


class BabilongBatches:
    """Training batches over one or more bAbI tasks (each row draws its task uniformly)."""

    def __init__(
        self,
        tasks: tuple[str, ...],
        batch_size: int,
        segment_len: int,
        seed: int,
        babi_dir: str | None = None,
        noise_dir: str | None = None,
    ) -> None:
        self.tasks, self.batch_size, self.segment_len, self.seed = tasks, batch_size, segment_len, seed
        self.babi_dir, self.noise_dir = babi_dir, noise_dir
        self.index = 0
        _ = self.generators  # fail on missing bAbI files now

    @cached_property
    def generators(self) -> list[Babilong]:
        return [Babilong(t, "train", babi_dir=self.babi_dir, noise_dir=self.noise_dir) for t in self.tasks]

    def row(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        """One sample as (x, y) int64 arrays of length n."""
        for _ in range(1000):
            gen = self.generators[int(rng.integers(len(self.generators)))]
            index = int(rng.integers(len(gen.questions)))
            q = gen.questions[index]
            tail = (prompt_suffix(q.question) + q.answer + "\n").encode()
            room = n + 1 - len(tail)
            if room < 0:
                continue
            sample = gen.sample(index, room, seed=int(rng.integers(2**31)))
            if sample is None:  # the facts alone do not fit: draw another question
                continue
            body = sample.context().encode() + tail
            seq = np.full(n + 1, PAD, dtype=np.int64)
            seq[n + 1 - len(body) :] = np.frombuffer(body, dtype=np.uint8)
            x, y = seq[:-1].copy(), np.full(n, IGNORE_INDEX, dtype=np.int64)
            answer_len = len(q.answer.encode()) + 1  # the answer and its newline
            y[n - answer_len :] = seq[n + 1 - answer_len :]
            return x, y
        raise ConfigError(
            f"rows of {n} bytes are too short for the questions' facts: raise --segment-len or the segments per step"
        )

    def next_batch(self, segments: int = 1) -> TaskBatch:
        rng = np.random.default_rng([self.seed, self.index])
        self.index += 1
        rows = [self.row(rng, segments * self.segment_len) for _ in range(self.batch_size)]
        xs, ys = zip(*rows)
        return TaskBatch(torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys)), True)

    def state_dict(self) -> dict[str, int]:
        return {"index": self.index}

    def load_state_dict(self, state: dict) -> None:
        index = state.get("index")
        if not (isinstance(index, int) and index >= 0):
            raise ValueError(f"invalid BabilongBatches state {state!r}: index must be an integer >= 0")
        self.index = index
