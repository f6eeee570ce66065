"""Plots from a benchmark JSON (``python -m benchmarks.plot FILE.json``): cost against context length (log-log)
and training / generation throughput with the peers. PNGs are written next to the JSON."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(path: str) -> None:
    result = json.loads(Path(path).read_text())
    records = [r for r in result["records"] if "error" not in r and "skipped" not in r]
    stem = Path(path).with_suffix("")
    ctx = sorted((r for r in records if r["case"] == "context"), key=lambda r: r["span"])
    if ctx:
        fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
        spans = [r["span"] for r in ctx]
        a.loglog(spans, [r["us_per_token"] for r in ctx], "o-", base=2)
        a.set(xlabel="context (span, tokens)", ylabel="time per token (us)", title="Full attention: time")
        b.loglog(spans, [r["peak_rss_mb"] for r in ctx], "o-", base=2, color="C1")
        b.set(xlabel="context (span, tokens)", ylabel="peak resident memory (MB)", title="Full attention: memory")
        for ax in (a, b):
            ax.grid(alpha=0.3, which="both")
        fig.suptitle(f"memtx 8x256 All-attention, segment 512, batch 1 ({result['machine']['cpu']})", fontsize=9)
        fig.tight_layout()
        fig.savefig(f"{stem}-context.png", dpi=110)
        plt.close(fig)
    bars = [(f"train {r['model']}", r["tokens_per_s"]) for r in records if r["case"] == "train"]
    for r in records:
        if r["case"].startswith("peer_"):
            case = r["case"].removeprefix("peer_") + (" compiled" if r.get("compile") else "")
            bars += [(f"{case} {k}" + (f" (vs {r['peer']})" if k == "memtx" else ""), v)
                     for k, v in r["tokens_per_s"].items()]  # fmt: skip
    if bars:
        fig, ax = plt.subplots(figsize=(8, 0.45 * len(bars) + 1.2))
        ax.barh([b[0] for b in bars][::-1], [b[1] for b in bars][::-1], color="C0")
        ax.set(xlabel="tokens/s", title="Throughput (median)")
        ax.grid(alpha=0.3, axis="x")
        fig.tight_layout()
        fig.savefig(f"{stem}-throughput.png", dpi=110)
        plt.close(fig)


if __name__ == "__main__":
    main(sys.argv[1])
