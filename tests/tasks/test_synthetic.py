"""Synthetic memory tasks: layout, determinism by (seed, batch index), held-out stream, bad settings."""

import numpy as np
import pytest
import torch

from memtx.errors import ConfigError
from memtx.tasks.synthetic import IGNORE_INDEX, TaskBatches, check_task, make_sample


@pytest.mark.parametrize("task", ["copy", "reverse"])
def test_copy_and_reverse_layout(task):
    x, y = make_sample(task, np.random.default_rng(0), symbols=5, pairs=1, segments=4, segment_len=6)
    n, half = 24, 12
    content = x[:half]
    assert x[half] == 5  # SEP opens the second half
    answer = content if task == "copy" else content[::-1]
    assert (y[half:] == answer).all() and (y[:half] == IGNORE_INDEX).all()
    assert (x[half + 1 :] == answer[:-1]).all() and len(x) == n  # teacher forcing: the answer so far is input


def test_assoc_layout_queries_pairs_from_earlier_segments():
    rng = np.random.default_rng(3)
    x, y = make_sample("assoc", rng, symbols=10, pairs=4, segments=3, segment_len=9)
    pairs = {}
    body = x[:18]
    for i in range(0, 18, 2):
        if body[i] != 11:
            pairs[int(body[i])] = int(body[i + 1])
    assert len(pairs) == 4 and (body[body != 11] < 10).all()
    scored = np.flatnonzero(y != IGNORE_INDEX)
    assert len(scored) == 4  # (9 - 1) // 2 queries fit
    for t in scored:
        assert pairs[int(x[t])] == y[t]  # the input at t is the key, the target its value
    assert x[scored[0] - 1] == 10  # SEP before the first query


def test_batches_are_a_function_of_seed_and_index():
    a = TaskBatches("copy", 3, 4, symbols=6, pairs=1, seed=7)
    first = [a.next_batch(2).x for _ in range(3)]
    b = TaskBatches("copy", 3, 4, symbols=6, pairs=1, seed=7)
    b.load_state_dict({"index": 2})
    assert torch.equal(b.next_batch(2).x, first[2])
    c = TaskBatches("copy", 3, 4, symbols=6, pairs=1, seed=8)
    assert not torch.equal(c.next_batch(2).x, first[0])
    held_out = [batch.x for batch in a.eval_batches(5, 2, 2)]
    assert [h.shape[0] for h in held_out] == [2, 2, 1]
    assert all(torch.equal(p, q.x) for p, q in zip(held_out, a.eval_batches(5, 2, 2), strict=True))
    assert not any(torch.equal(held_out[0], f[:2]) for f in first)


@pytest.mark.parametrize(
    "task, symbols, pairs, segments, segment_len",
    [("sort", 4, 1, 2, 4), ("assoc", 4, 5, 4, 8), ("assoc", 8, 8, 2, 8), ("assoc", 8, 2, 1, 8), ("copy", 1, 1, 2, 4)],
)
def test_impossible_layouts_raise_config_errors(task, symbols, pairs, segments, segment_len):
    with pytest.raises(ConfigError):
        check_task(task, symbols, pairs, segments, segment_len)
