"""One runner for every benchmark case (registry: ``benchmarks/cases.py``). Each (case, parameters) pair runs in a
fresh child process, which reports its peak resident memory; the results go to one JSON file with the machine,
torch version and memtx commit; ``benchmarks/plot.py`` draws the plots from that JSON.

    python -m benchmarks.run                       # the whole plan (about 13 minutes on 2 cores)
    python -m benchmarks.run --only gemm,train     # some cases
    python -m benchmarks.run --device cuda [--precision bf16]   # the cases that take a device, on the GPU
    python -m benchmarks.plot benchmarks/results/<file>.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

SPANS = [1024, 2048, 4096, 8192, 16384, 32768, 65536]
PLAN: list[tuple[str, dict]] = [
    ("gemm", {}),
    ("train", {"model": "allattn-256"}),
    ("train", {"model": "transformer-256"}),
    ("train", {"model": "allattn-512"}),
    ("train", {"model": "transformer-512"}),
    ("generate_tokens", {"batch_size": 1}),
    ("generate_tokens", {"batch_size": 16}),
    ("generate_tokens", {"batch_size": 1, "compile": True}),
    *[("context", {"span": s}) for s in SPANS],
    ("peer_train", {}),
    ("peer_generate", {}),
    ("peer_generate", {"compile": True}),
    ("peer_recurrent_train", {"peer": "infini-transformer-pytorch"}),
    ("peer_recurrent_train", {"peer": "titans-pytorch"}),
    ("gemm", {}),  # again at the end: the machine's rate over the whole run
]
ROOT = Path(__file__).resolve().parent.parent
DEVICE_CASES = ("gemm", "train", "generate_tokens", "context")  # the cases that run on --device (peers: the CPU)


def child(name: str, params: dict) -> None:
    from memtx.runtime import tune_allocator

    tuned = tune_allocator()
    from benchmarks.cases import CASES

    t0 = time.perf_counter()
    record = CASES[name](**params)
    record.update(case=name, params=params, wall_s=time.perf_counter() - t0, allocator_tuned=tuned,
                  peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)  # fmt: skip
    print(json.dumps(record))


def machine() -> dict:
    import torch

    cpuinfo = Path("/proc/cpuinfo")
    names = [ln.split(":", 1)[1].strip() for ln in cpuinfo.read_text().splitlines() if ln.startswith("model name")]
    git = ["git", "-C", str(ROOT)]
    commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run([*git, "status", "--porcelain", "--", "src"], capture_output=True, text=True).stdout
    return {
        "platform": platform.platform(),
        "cpu": names[0] if names else platform.processor(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "memtx_commit": commit,
        "src_modified": bool(dirty.strip()),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def summarise(records: list[dict]) -> dict:
    gemm = [r["gflops"] for r in records if r["case"] == "gemm"]
    out: dict = {"gemm_gflops_median": statistics.median(gemm) if gemm else None}
    for r in records:
        if r["case"] == "train" and gemm:
            out[f"train_{r['model']}_tokens_per_s"] = round(r["tokens_per_s"], 1)
            out[f"train_{r['model']}_fraction_of_gemm"] = round(r["model_gflops"] / out["gemm_gflops_median"], 3)
        compiled = "_compiled" if r.get("compile") else ""
        if r["case"] == "generate_tokens":
            out[f"generate_b{r['batch_size']}{compiled}_tokens_per_s"] = round(r["tokens_per_s"], 1)
        if r["case"].startswith("peer_") and "ratio_memtx_over_peer" in r:  # keys name the peer: one case, many peers
            key = f"{r['case']}{compiled}"
            out[f"{key}_ratio_vs_{r['peer']}"] = round(r["ratio_memtx_over_peer"], 2)
            out[f"{key}_tokens_per_s_vs_{r['peer']}"] = {k: round(v, 1) for k, v in r["tokens_per_s"].items()}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated case names (default: the whole plan)")
    parser.add_argument("--out", default="", help="JSON path (default: benchmarks/results/bench-<date>.json)")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N: where the device cases run")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"), help="of gemm and train")
    parser.add_argument("--child", nargs=2, metavar=("CASE", "PARAMS_JSON"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], json.loads(args.child[1]))
        return 0
    from memtx.errors import ConfigError
    from memtx.runtime import resolve_device

    try:
        resolve_device(args.device)  # here, before any case runs
    except ConfigError as e:
        parser.error(str(e))
    only = set(filter(None, args.only.split(",")))
    plan = [(n, p) for n, p in PLAN if not only or n in only]
    if args.device != "cpu":  # on a GPU: only the cases that take a device, each told where
        plan = [(n, {**p, "device": args.device}) for n, p in plan if n in DEVICE_CASES]
    if args.precision != "fp32":
        plan = [(n, {**p, "precision": args.precision} if n in ("gemm", "train") else p) for n, p in plan]
    records = []
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    for i, (name, params) in enumerate(plan, 1):
        print(f"[{i}/{len(plan)}] {name} {json.dumps(params)}", file=sys.stderr, flush=True)
        proc = subprocess.run([sys.executable, "-m", "benchmarks.run", "--child", name, json.dumps(params)],
                              cwd=ROOT, env=env, capture_output=True, text=True)  # fmt: skip
        if proc.returncode:
            records.append({"case": name, "params": params, "error": proc.stderr.strip().splitlines()[-1:]})
            continue
        records.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    result = {"machine": machine(), "summary": summarise([r for r in records if "error" not in r]),
              "records": records}  # fmt: skip
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(args.out or ROOT / "benchmarks" / "results" / f"bench-{stamp}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["summary"], indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
