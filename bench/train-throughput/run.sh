#!/usr/bin/env bash
# The GPU training-throughput benchmark, run ON THE GPU MACHINE: tokens/s and MFU of the dense
# ~110M preset and the MoE preset in yiflow (`yiflow-worker bench-train`) and in the same model
# written in PyTorch (bench/train-throughput/model.py: eager and torch.compile; for the MoE a naive
# per-expert loop and grouped GEMMs), same batch, same GPU, one after the other.
# Prints the table and writes bench/out/train-throughput.md (raw results: .jsonl, logs: .log).
#
# Settings: WORKER (yiflow-worker binary; default .dev/bin/yiflow-worker, else target/release/),
# PYTHON (default python3, the one with torch), SEQ (1024), BATCH (32), STEPS (20), WARMUP (5),
# ONLY (a regular expression over "impl/preset/variant" choosing the runs), BREAKDOWN (set: also
# time forward+backward without the optimizer step), TRACE (set: each run also records 3 steps with
# PyTorch's profiler into TRACE_DIR (default bench/out), and kernels.py writes their kernel
# breakdown to bench/out/kernels.md).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
here="$root/bench/train-throughput"
out="$root/bench/out"
python="${PYTHON:-python3}"
seq="${SEQ:-1024}" batch="${BATCH:-32}" steps="${STEPS:-20}" warmup="${WARMUP:-5}"
only="${ONLY:-.}"
worker="${WORKER:-}"
if [ -z "$worker" ]; then
    for candidate in "$root/.dev/bin/yiflow-worker" "$root/target/release/yiflow-worker"; do
        if [ -x "$candidate" ]; then worker="$candidate"; break; fi
    done
fi
if [ -z "$worker" ] || [ ! -x "$worker" ]; then
    echo "no yiflow-worker binary: build it with 'cargo build --release -p yiflow-worker' or set WORKER" >&2
    exit 2
fi
if ! torch_lib="$("$python" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"; then
    echo "$python cannot import torch: set PYTHON to the Python that has PyTorch 2.11" >&2
    exit 2
fi
# The worker runs against this machine's libtorch (the same 2.11.0 it was built for).
export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
gpu="$(nvidia-smi --query-gpu=name --format=csv,noheader | head -n 1)"
peak="$("$python" "$here/report.py" peak "$gpu")"
if [ "$peak" = "0.0" ]; then
    echo "unknown GPU '$gpu': MFU is reported against 989 TFLOP/s (H100 SXM)" >&2
    peak=989.0
fi

mkdir -p "$out"
results="$out/train-throughput.jsonl"
traces=()
log="$out/train-throughput.log"
: > "$results"
: > "$log"
{ echo "== $gpu, peak $peak TFLOP/s, $(date -u)"; "$worker" doctor || echo "yiflow-worker doctor failed"; } >> "$log" 2>&1

# run IMPL PRESET VARIANT COMMAND...: one JSON line into $results, or a line saying it failed.
run() {
    local impl="$1" preset="$2" variant="$3"
    shift 3
    if ! [[ "$impl/$preset/$variant" =~ $only ]]; then return 0; fi
    echo "running $impl $preset $variant" >&2
    echo "== $impl $preset $variant: $*" >> "$log"
    local line
    if [ -n "${TRACE:-}" ]; then
        local trace="${TRACE_DIR:-$out}/trace-$impl-$preset-${variant// /-}.json"
        traces+=("$trace")
        set -- "$@" --trace "$trace"
    fi
    if line="$("$@" 2>> "$log" | tail -n 1)" && [[ "$line" == "{"* ]]; then
        echo "$line" >> "$results"
    else
        echo "{\"implementation\": \"$impl\", \"preset\": \"$preset\", \"variant\": \"$variant\", \"seq\": $seq, \"batch\": $batch, \"error\": \"see train-throughput.log\"}" >> "$results"
    fi
}
common=(--seq "$seq" --batch "$batch" --steps "$steps" --warmup "$warmup" --peak-tflops "$peak")
py() { (cd "$here" && "$python" bench.py "$@" "${common[@]}"); }

run yiflow dense-125m dense "$worker" bench-train --preset dense-125m "${common[@]}" --json
run yiflow dense-125m "dense unfused" "$worker" bench-train --preset dense-125m --unfused "${common[@]}" --json
run pytorch dense-125m eager py dense-125m eager
run pytorch dense-125m compile py dense-125m compile
run yiflow moe-125m grouped-mm "$worker" bench-train --preset moe-125m --expert-kernel grouped-mm "${common[@]}" --json
run yiflow moe-125m "grouped-mm unfused" "$worker" bench-train --preset moe-125m --expert-kernel grouped-mm --unfused "${common[@]}" --json
run yiflow moe-125m padded-bmm "$worker" bench-train --preset moe-125m --expert-kernel padded-bmm "${common[@]}" --json
run pytorch moe-125m loop py moe-125m loop
run pytorch moe-125m grouped py moe-125m grouped
run pytorch moe-125m grouped-compile py moe-125m grouped-compile
if [ -n "${BREAKDOWN:-}" ]; then
    # Forward and backward alone: what the optimizer step costs on each side.
    run yiflow dense-125m "dense fwd+bwd" "$worker" bench-train --preset dense-125m "${common[@]}" --json --no-optimizer
    run pytorch dense-125m "eager fwd+bwd" py dense-125m eager --no-optimizer
    run yiflow moe-125m "grouped-mm fwd+bwd" "$worker" bench-train --preset moe-125m "${common[@]}" --json --no-optimizer
    run pytorch moe-125m "grouped fwd+bwd" py moe-125m grouped --no-optimizer
fi

if [ "${#traces[@]}" -gt 0 ]; then
    present=()
    for trace in "${traces[@]}"; do [ -f "$trace" ] && present+=("$trace"); done
    "$python" "$here/kernels.py" "${present[@]}" > "$out/kernels.md" || echo "kernels.py failed" >&2
fi
"$python" "$here/report.py" table "$results" "$gpu" "$peak" | tee "$out/train-throughput.md"
