#!/usr/bin/env bash
# GPU checks for a CUDA node (CI has no GPU): the GPU tests, training throughput and peak GPU memory
# (benchmarks/bench_train.py --device cuda), and a profiled README-config step in fp32 and bf16.
#
#     bash scripts/gpu_check.sh [OUT_DIR]        # PYTHON=... to choose the interpreter (default: python3)
#
# Writes OUT_DIR/{gpu_tests.log, bench_train.log, bench_train.csv, profile_fp32.txt, profile_bf16.txt};
# data_stats/bench_train.csv gains this device's rows.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${1:-gpu_check}
mkdir -p "$OUT"
status=0
{ nvidia-smi -L; $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"; } \
    | tee "$OUT/device.txt" || exit 1
$PY -m pytest tests/test_gpu.py -m gpu -q -p no:cacheprovider 2>&1 | tee "$OUT/gpu_tests.log" || status=1
$PY benchmarks/bench_train.py --device cuda --workers "${WORKERS:-8}" 2>&1 | tee "$OUT/bench_train.log" || status=1
cp data_stats/bench_train.csv "$OUT/bench_train.csv"
for amp in none bf16; do
    $PY benchmarks/profile_train_step.py --device cuda --amp $amp --batch 16 --sort self_cuda_time_total --rows 30 \
        >"$OUT/profile_${amp/none/fp32}.txt" 2>&1 || status=1
done
exit $status
