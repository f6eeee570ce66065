"""Run memtx with BABILong's book noise switched off: every sample is its facts alone (left-padded in training rows),
so a pilot can tell what the noise costs from what learning the task itself costs.

    python benchmarks/no_noise.py train babilong-qa1-rmt --segment-len 256 --curriculum 1 --out runs/pilot/X
    python benchmarks/no_noise.py babilong runs/pilot/X --tasks qa1 --lengths 0k
"""

from __future__ import annotations

import contextlib
import sys

from memtx.cli import main as memtx_main
from memtx.tasks.babilong import Babilong, parse_length


@contextlib.contextmanager
def facts_only():
    """Within the block, ``Babilong.sample`` returns the 0k sample (no noise) when it fits the length, else None."""
    original = Babilong.sample

    def sample(self, index, length, seed=0, facts=None):
        s = original(self, index, 0, seed, facts)
        return s if s.length <= parse_length(length) else None

    Babilong.sample = sample
    try:
        yield
    finally:
        Babilong.sample = original


if __name__ == "__main__":
    with facts_only():
        sys.exit(memtx_main(sys.argv[1:]))
