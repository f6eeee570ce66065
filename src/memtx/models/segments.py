"""The one segment loop: training, evaluation and generation all feed long inputs through it.

A long input (B, N) is cut into segments of T tokens; each runs as ``out = model(x_i, state)`` and its
``out.state`` goes to the next one. State is a value, never kept on a module.

Truncated backpropagation through time: within one call of S segments, with ``bptt_depth = k``, the state
entering segment i is detached when i < S - k, so gradients cross at most the last k memory hand-overs (the RMT
paper's "BPTT depth"; k = 0: none, k < 0: all). The state passed in is always detached: earlier calls' graphs
are gone. A test checks that gradients reach exactly the last k segments before the final one and are zero
before them (tests/models/test_segments.py) -- the guard against public RMT code that drops its detach result.
"""

from __future__ import annotations

from collections.abc import Iterator

from torch import Tensor

from memtx.memory.state import MemoryState


def segments(
    model,
    x: Tensor,
    state: MemoryState | None,
    segment_len: int,
    bptt_depth: int = -1,
    targets: Tensor | None = None,
    scores: str = "all",
) -> Iterator[tuple[slice, object]]:
    """Yield ``(columns, out)`` for each segment of x (B, N): ``out.logits`` (B, T_i, V) scores x[:, columns]
    (and ``out.nll`` the nats of ``targets[:, columns]`` when targets are given; ``scores`` as the model's
    forward takes it); the last ``out.state`` is the state after the whole input."""
    n = x.shape[1]
    n_segments = -(-n // segment_len)
    if state is not None:
        state = state.detach()
    for i in range(n_segments):
        if state is not None and 0 <= bptt_depth and i < n_segments - bptt_depth:
            state = state.detach()
        columns = slice(i * segment_len, min((i + 1) * segment_len, n))
        out = model(x[:, columns], state, None if targets is None else targets[:, columns], scores)
        state = out.state
        yield columns, out
