#!/usr/bin/env bash
# The GPU checks as one short run, on a machine where python3 already has torch with CUDA (as the lent H200 has;
# nothing is installed): the gpu-marked tests, then the device benchmarks in fp32 and bf16. Logs and JSON go to
# OUT_DIR (default: $OUT when set, else benchmarks/results).
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-benchmarks/results}}
mkdir -p "$out"
export PYTHONPATH="$PWD/src:$PWD" PYTHONUNBUFFERED=1
stamp=$(date +%Y%m%d-%H%M%S)
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))" || exit 1
python3 -m pytest -q -m gpu -p no:cacheprovider tests/test_gpu.py 2>&1 | tee "$out/gpu-tests-$stamp.log"
python3 -m benchmarks.run --device cuda --out "$out/bench-gpu-fp32-$stamp.json" 2>&1 | tail -30
python3 -m benchmarks.run --device cuda --precision bf16 --only gemm,train \
    --out "$out/bench-gpu-bf16-$stamp.json" 2>&1 | tail -20
