"""Does bounding ARMT's memory recover the long BABILong cells? A diagnostic for the drift memory_drift.py shows.

Caps every layer's associative matrix A, per row, at the norm it had after --at segments (a row of a
`benchmarks/memory_drift.py` JSON of the same run), then runs `memtx babilong` with the remaining arguments:

    python benchmarks/armt_capped.py DRIFT_JSON --at 32 -- RUN_DIR --tasks qa1 --lengths 128k --samples 25

The cap is applied after each write (a rescale, no other change), so below it the model runs as trained.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys

from memtx.cli import main as memtx_main
from memtx.memory import associative


def layer_caps(drift: dict, at: int) -> list[float]:
    """Per-layer norms of A after `at` segments, from a memory_drift.py result."""
    row = next((r for r in drift["rows"] if r["segments"] == at), None)
    if row is None:
        have = ", ".join(str(r["segments"]) for r in drift["rows"])
        raise SystemExit(f"armt_capped: error: no row at {at} segments in the drift JSON (it has {have})")
    caps = {int(k.rsplit(".", 1)[1]): v for k, v in row["norms"].items() if k.startswith("armt.A.")}
    if not caps:
        raise SystemExit("armt_capped: error: the drift JSON holds no ARMT matrices: pass one of an ARMT run")
    return [caps[i] for i in sorted(caps)]


@contextlib.contextmanager
def capped(caps: list[float]):
    """Within the block, the state every ARMT segment hands on has each row's A of layer i rescaled to a norm of at
    most caps[i] (A changes only at the segment's writes, so this caps every write)."""
    run = associative.AssociativeMemory.run

    def capped_run(self, blocks, h, state, pos):
        h, state = run(self, blocks, h, state, pos)
        bounded = []
        for a, cap in zip(state.A, caps, strict=True):
            norm = a.flatten(1).norm(dim=1).view(-1, *([1] * (a.dim() - 1)))
            bounded.append(a * (cap / norm.clamp_min(1e-12)).clamp(max=1.0))
        return h, associative.AssociativeState(tuple(bounded), state.z)

    associative.AssociativeMemory.run = capped_run
    try:
        yield
    finally:
        associative.AssociativeMemory.run = run


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ours, rest = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("drift_json")
    parser.add_argument("--at", type=int, required=True, help="segments (a row of the drift JSON) whose norms cap A")
    args = parser.parse_args(ours)
    try:
        with open(args.drift_json) as f:
            caps = layer_caps(json.load(f), args.at)
    except (OSError, ValueError) as e:
        raise SystemExit(
            f"armt_capped: error: cannot read {args.drift_json} ({e}): pass a memory_drift.py JSON"
        ) from None
    print(f"caps of A per layer (after {args.at} segments): {caps}", file=sys.stderr)
    with capped(caps):
        return memtx_main(["babilong", *rest])


if __name__ == "__main__":
    sys.exit(main())
