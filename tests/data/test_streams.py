import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from memtx.data import Batch, TrainStreams, count_targets, eval_batches
from memtx.errors import DataError


def random_bytes(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8)


@st.composite
def stream_cases(draw):
    b = draw(st.integers(1, 6))
    t = draw(st.integers(1, 12))
    n = draw(st.integers(b * (t + 1), b * (t + 1) * 4 + 10))
    return b, t, n


@settings(max_examples=80, deadline=None)
@given(stream_cases(), st.integers(0, 2**16))
def test_train_streams_contiguous_and_wrap(case, seed: int) -> None:
    b, t, n = case
    data = random_bytes(n, seed)
    L = n // b
    streams = data[: b * L].reshape(b, L).astype(np.int64)
    ts = TrainStreams(data, b, t)
    per_epoch = (L - 1) // t  # windows of T + 1 bytes that fit, stepping by T
    epochs: list[list[Batch]] = []
    for k in range(3 * per_epoch + 1):
        batch = ts.next_batch()
        assert isinstance(batch, Batch) and batch.x.shape == batch.y.shape == (b, t)
        assert batch.x.dtype == batch.y.dtype == torch.int64
        p, epoch = (k % per_epoch) * t, k // per_epoch
        assert batch.reset == (p == 0) and ts.epoch == epoch
        assert np.array_equal(batch.x.numpy(), streams[:, p : p + t])
        assert np.array_equal(batch.y.numpy(), streams[:, p + 1 : p + t + 1])
        if batch.reset:
            epochs.append([])
        epochs[-1].append(batch)
    assert ts.state_dict() == {"pos": t, "epoch": 3}
    assert [len(e) for e in epochs] == [per_epoch] * 3 + [1]
    for e in epochs[:3]:  # within an epoch each x starts right after the previous one ended
        assert np.array_equal(torch.cat([bt.x for bt in e], 1).numpy(), streams[:, : per_epoch * t])
        assert np.array_equal(torch.cat([bt.y for bt in e], 1).numpy(), streams[:, 1 : per_epoch * t + 1])


def test_first_batch_and_wrap() -> None:
    data = np.arange(2 * 10, dtype=np.uint8)  # B=2 streams of L=10: [0..9], [10..19]
    ts = TrainStreams(data, batch_size=2, seg_len=4)
    b0, b1, b2 = ts.next_batch(), ts.next_batch(), ts.next_batch()
    assert b0.reset and not b1.reset and b2.reset
    assert b0.x.tolist() == [[0, 1, 2, 3], [10, 11, 12, 13]]
    assert b0.y.tolist() == [[1, 2, 3, 4], [11, 12, 13, 14]]
    assert b1.x.tolist() == [[4, 5, 6, 7], [14, 15, 16, 17]] and b1.y[:, -1].tolist() == [8, 18]
    assert b2.x.tolist() == b0.x.tolist() and ts.epoch == 1  # only 2 bytes left: wrapped


@settings(max_examples=40, deadline=None)
@given(stream_cases(), st.integers(0, 30), st.integers(1, 30))
def test_resume_gives_identical_batches(case, before: int, after: int) -> None:
    b, t, n = case
    data = random_bytes(n)
    ts = TrainStreams(data, b, t)
    for _ in range(before):
        ts.next_batch()
    state = ts.state_dict()
    expected = [ts.next_batch() for _ in range(after)]
    for resumed in (TrainStreams(data, b, t, start=dict(state)), TrainStreams(data, b, t)):
        resumed.load_state_dict(state)
        for e in expected:
            got = resumed.next_batch()
            assert torch.equal(got.x, e.x) and torch.equal(got.y, e.y) and got.reset == e.reset
        assert resumed.state_dict() == ts.state_dict()


def test_train_streams_too_short() -> None:
    match = "35 bytes.*--batch-size 4 .*--segment-len 8.*lower --batch-size or --segment-len"
    with pytest.raises(DataError, match=match) as e:
        TrainStreams(np.zeros(35, dtype=np.uint8), batch_size=4, seg_len=8)
    assert "\n" not in str(e.value)
    TrainStreams(np.zeros(36, dtype=np.uint8), batch_size=4, seg_len=8)  # exactly B * (T + 1) bytes is enough


def test_train_streams_bad_state() -> None:
    with pytest.raises(ValueError):
        TrainStreams(np.zeros(100, dtype=np.uint8), 2, 4, start={"pos": -1, "epoch": 0})


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 300), st.integers(1, 9), st.integers(1, 17))
def test_eval_batches_score_every_target_once(n: int, b: int, t: int) -> None:
    data = random_bytes(n, seed=n)
    batches = list(eval_batches(data, b, t))
    m = count_targets(data)
    assert m == max(n - 1, 0)
    if m == 0:
        assert batches == []
        return
    rows = min(b, m)
    assert all(x.shape == y.shape and x.shape[0] == rows for x, y in batches)
    assert all(x.dtype == y.dtype == torch.int64 for x, y in batches)
    assert all(x.shape[1] == t for x, _ in batches[:-1]) and 1 <= batches[-1][0].shape[1] <= t
    xs = torch.cat([x for x, _ in batches], dim=1).numpy()
    ys = torch.cat([y for _, y in batches], dim=1).numpy()
    scored = ys != -100
    assert int(scored.sum()) == m
    sizes = scored.sum(axis=1)
    assert sizes.max() - sizes.min() <= 1 and sizes.min() >= 1
    # Padding only at the tail of a row, with x = 0 there.
    assert all(scored[r, : sizes[r]].all() and not scored[r, sizes[r] :].any() for r in range(rows))
    assert (xs[~scored] == 0).all()
    # Reconstruct positions: row r holds targets starts[r] .. starts[r] + sizes[r] - 1, chunks in order.
    starts = 1 + np.concatenate([[0], np.cumsum(sizes)[:-1]])
    positions = np.concatenate([np.arange(s, s + k) for s, k in zip(starts, sizes, strict=True)])
    assert np.array_equal(positions, np.arange(1, n))  # every target 1..n-1 exactly once
    assert np.array_equal(ys[scored], data[positions])
    assert np.array_equal(xs[scored], data[positions - 1])  # each input is the byte before its target


def test_eval_batches_small_example() -> None:
    data = np.arange(10, dtype=np.uint8)  # targets 1..9 in chunks of 5 and 4
    (x0, y0), (x1, y1) = eval_batches(data, batch_size=2, seg_len=3)
    assert x0.tolist() == [[0, 1, 2], [5, 6, 7]] and y0.tolist() == [[1, 2, 3], [6, 7, 8]]
    assert x1.tolist() == [[3, 4], [8, 0]] and y1.tolist() == [[4, 5], [9, -100]]


def test_eval_batches_fewer_targets_than_rows() -> None:
    ((x, y),) = eval_batches(np.array([7, 8, 9], dtype=np.uint8), batch_size=8, seg_len=4)
    assert x.tolist() == [[7], [8]] and y.tolist() == [[8], [9]]
