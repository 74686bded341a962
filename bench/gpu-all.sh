#!/usr/bin/env bash
# Every GPU measurement in one command, for the GPU machine, where device time is scarce: the CUDA
# tests of yiflow-stages (the fused kernels against their plain forms, decoding, both MoE kernels),
# then bench/train-throughput (with TRACE=1), bench/pretrain-gpu and bench/checkpoint, each only if
# time is left. Needs .dev/bin from scripts/gpu-bundle.sh. BUDGET (seconds, default 540) bounds the
# whole; `TRACE=` (empty) skips the kernel traces, which take about a quarter of the throughput
# bench's time. Results land in bench/out (8 files: what the device tool brings back).
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
budget="${BUDGET:-540}"
export PYTHONUNBUFFERED=1
lib="$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
left() { echo $((budget - SECONDS)); }
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
echo "== CUDA tests"
timeout 120 .dev/bin/stages-tests --ignored on_cuda 2>&1 | grep -E "^test |panicked|difference|test result|yiflow:"
echo "== train-throughput (${SECONDS}s)"
TRACE="${TRACE-1}" TRACE_DIR=/tmp timeout $(($(left) - 150)) bash bench/train-throughput/run.sh > /tmp/train-throughput.txt 2>&1 \
    || echo "train-throughput stopped: $?"
if [ "$(left)" -gt 100 ]; then
    echo "== pretrain-gpu (${SECONDS}s)"
    timeout $(($(left) - 40)) bash bench/pretrain-gpu/run.sh > /dev/null 2>&1 || echo "pretrain-gpu stopped: $?"
fi
if [ "$(left)" -gt 60 ]; then
    echo "== checkpoint (${SECONDS}s)"
    CPU=0 CHECKPOINTS=3 timeout $(($(left) - 5)) bash bench/checkpoint/run.sh > /dev/null 2>&1 || echo "checkpoint stopped: $?"
fi
echo "== done at ${SECONDS}s"
cat bench/out/train-throughput.md bench/out/pretrain-gpu.md bench/out/checkpoint.md 2>/dev/null
grep -E "^## |kernels per step|^\| [a-z/]+ \|" bench/out/kernels.md 2>/dev/null
