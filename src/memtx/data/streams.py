"""Ordered byte streams for models that carry memory from one segment to the next.

Training (:class:`TrainStreams`): the split is cut into ``B`` contiguous streams (row ``b`` always continues
stream ``b``) read ``T`` bytes at a time, wrapping to the start with ``reset=True``.
Evaluation (:func:`eval_batches`): every target byte ``1..n-1`` is scored exactly once.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import numpy as np
import torch

from memtx.errors import DataError

IGNORE_INDEX = -100


class Batch(NamedTuple):
    """One training step: int64 ``x``, ``y`` of shape ``(B, T)`` (``y[:, t]`` is the byte after ``x[:, t]``).

    ``reset`` is True when the streams (re)start at position 0: drop any memory carried from earlier batches.
    """

    x: torch.Tensor
    y: torch.Tensor
    reset: bool


def _long(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(a, dtype=np.int64))


class TrainStreams:
    """``B`` contiguous streams over ``data`` (stream ``b`` = ``data[b*L:(b+1)*L]``, ``L = len(data) // B``).

    Each :meth:`next_batch` returns the next ``T`` bytes of every stream; the window of call ``k+1`` starts
    right after that of call ``k``. When fewer than ``T + 1`` bytes are left, the streams wrap to position 0,
    ``epoch`` increases and the batch has ``reset=True`` (as does the very first batch): a batch is reset
    exactly when its window starts at position 0. ``start`` is a :meth:`state_dict` to resume from.
    """

    def __init__(self, data: np.ndarray, batch_size: int, seg_len: int, start: dict | None = None) -> None:
        if batch_size < 1 or seg_len < 1:
            raise ValueError(f"batch_size and seg_len must be >= 1, got {batch_size} and {seg_len}")
        n = len(data)
        self.batch_size, self.seg_len = batch_size, seg_len
        self.stream_len = n // batch_size
        if self.stream_len < seg_len + 1:
            raise DataError(
                f"the training split has {n:,} bytes, too few for --batch-size {batch_size} streams of "
                f"--segment-len {seg_len} + 1 bytes (needs {batch_size * (seg_len + 1):,}): "
                "lower --batch-size or --segment-len"
            )
        self._streams = np.asarray(data)[: batch_size * self.stream_len].reshape(batch_size, self.stream_len)
        self.pos, self.epoch = 0, 0
        if start is not None:
            self.load_state_dict(start)

    def check_segments(self, segments: int) -> None:
        """DataError unless a window of `segments` segments fits in one stream."""
        t = self.seg_len * segments
        if t + 1 > self.stream_len:
            raise DataError(
                f"{segments} segments of {self.seg_len} bytes need streams of {t + 1:,} bytes, but the training split "
                f"gives {self.batch_size} streams of {self.stream_len:,}: lower --batch-size, --segment-len or the "
                "segments per step"
            )

    def next_batch(self, segments: int = 1) -> Batch:
        """The next window of every stream: ``x = s[:, p:p+n]``, ``y = s[:, p+1:p+n+1]``, n = segments * T."""
        self.check_segments(segments)
        p, t = self.pos, self.seg_len * segments
        if p + t + 1 > self.stream_len:
            p = 0
            self.epoch += 1
        window = self._streams[:, p : p + t + 1]
        self.pos = p + t
        return Batch(_long(window[:, :-1]), _long(window[:, 1:]), reset=p == 0)

    def state_dict(self) -> dict[str, int]:
        """``pos``: where the next window starts in every stream; ``epoch``: wraps so far."""
        return {"pos": self.pos, "epoch": self.epoch}

    def load_state_dict(self, state: dict) -> None:
        """Resume from :meth:`state_dict`: the following batches are identical to the saved run's."""
        pos, epoch = state["pos"], state["epoch"]
        if not (isinstance(pos, int) and isinstance(epoch, int) and pos >= 0 and epoch >= 0):
            raise ValueError(f"invalid TrainStreams state {state!r}: pos and epoch must be integers >= 0")
        self.pos, self.epoch = pos, epoch


def count_targets(data: np.ndarray) -> int:
    """Number of scored targets in a split of ``n`` bytes: bytes ``1..n-1`` (byte 0 has no context)."""
    return max(len(data) - 1, 0)


def eval_batches(data: np.ndarray, batch_size: int, seg_len: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Exact evaluation batches ``(x, y)``, int64 ``(B', W)`` with ``B' = min(B, n-1)`` and ``W <= T``.

    The ``n - 1`` targets are cut into ``B'`` contiguous chunks whose sizes differ by at most one; chunk
    ``b`` with targets ``[s, e)`` reads inputs ``[s-1, e-1)``. Batch ``k`` holds segment ``k`` of every chunk
    (row ``b`` always continues chunk ``b``, so memory is carried across consecutive batches). Tails of
    shorter chunks are padded with ``x = 0`` and ``y = -100``; the last batch may be narrower than ``T``.
    Every target ``1..n-1`` appears exactly once over the whole iteration.
    """
    if batch_size < 1 or seg_len < 1:
        raise ValueError(f"batch_size and seg_len must be >= 1, got {batch_size} and {seg_len}")
    data = np.asarray(data)
    m = count_targets(data)
    if m == 0:
        return
    rows = min(batch_size, m)
    base, extra = divmod(m, rows)  # the first `extra` chunks have base + 1 targets, the others base
    # Chunks of equal size tile a contiguous range of targets, so each group is a (rows, size) view.
    groups = []
    s = 1
    for r, size in ((extra, base + 1), (rows - extra, base)):
        if r:
            x = data[s - 1 : s - 1 + r * size].reshape(r, size)
            y = data[s : s + r * size].reshape(r, size)
            groups.append((x, y))
            s += r * size
    longest = base + (extra > 0)
    for lo in range(0, longest, seg_len):
        hi = min(lo + seg_len, longest)
        xb = np.zeros((rows, hi - lo), dtype=np.int64)
        yb = np.full((rows, hi - lo), IGNORE_INDEX, dtype=np.int64)
        r0 = 0
        for x, y in groups:
            w = max(min(hi, x.shape[1]) - lo, 0)
            xb[r0 : r0 + len(x), :w] = x[:, lo : lo + w]
            yb[r0 : r0 + len(y), :w] = y[:, lo : lo + w]
            r0 += len(x)
        yield torch.from_numpy(xb), torch.from_numpy(yb)
