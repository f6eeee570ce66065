"""Run the BABILong sweep with ARMT's norm bound set by hand: from a drift JSON (runs saved before the bound was
recorded in training), or off (the same model uncapped, to see what the bound does).

ARMT caps each row of every layer's associative matrix A at a per-layer norm after each write, in evaluation
(``memory/associative.py``; recorded in training). This sets that bound, for every model loaded, to the norm a
`benchmarks/memory_drift.py` JSON of the same run shows after --at segments, or to 0 (no cap), then runs
`memtx babilong` with the remaining arguments:

    python benchmarks/armt_capped.py DRIFT_JSON --at 32 -- RUN_DIR --tasks qa1 --lengths 128k --samples 25
    python benchmarks/armt_capped.py --off -- RUN_DIR --tasks qa1 --lengths 128k --samples 25
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys

import torch

from memtx.cli import main as memtx_main
from memtx.memory.associative import AssociativeMemory


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
def bound(caps: list[float] | None):
    """Within the block, every ARMT memory loaded from weights gets the norm bound caps[i] for layer i (None: 0 for
    every layer, no cap) in place of the one saved with it."""
    load = AssociativeMemory._load_from_state_dict

    def load_then_set(self, *args, **kwargs):
        load(self, *args, **kwargs)
        with torch.no_grad():
            self.norm_bound.copy_(torch.tensor(caps) if caps is not None else 0.0)

    AssociativeMemory._load_from_state_dict = load_then_set
    try:
        yield
    finally:
        AssociativeMemory._load_from_state_dict = load


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ours, rest = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("drift_json", nargs="?", help="a memory_drift.py JSON of the run whose norms cap A")
    parser.add_argument("--at", type=int, help="segments (a row of the drift JSON) whose norms cap A")
    parser.add_argument("--off", action="store_true", help="no cap: run the model as if no bound were recorded")
    args = parser.parse_args(ours)
    from_drift = args.drift_json is not None
    if args.off == from_drift or from_drift != (args.at is not None):
        parser.error("pass either DRIFT_JSON --at N, or --off")
    caps = None
    if not args.off:
        try:
            with open(args.drift_json) as f:
                caps = layer_caps(json.load(f), args.at)
        except (OSError, ValueError) as e:
            raise SystemExit(
                f"armt_capped: error: cannot read {args.drift_json} ({e}): pass a memory_drift.py JSON"
            ) from None
    print(f"bound of A per layer: {caps if caps is not None else 'none'}", file=sys.stderr)
    with bound(caps):
        return memtx_main(["babilong", *rest])


if __name__ == "__main__":
    sys.exit(main())
