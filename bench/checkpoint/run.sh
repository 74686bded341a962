#!/usr/bin/env bash
# The training loop's pause per asynchronous checkpoint against a synchronous save of the same
# state (weights, both AdamW moments, training state), through the trainer's own checkpointer:
# `yiflow-worker bench-checkpoint` (worker/src/bench_checkpoint.rs says what each side times).
# Runs on the CPU always, and on the GPU when `nvidia-smi` sees one. Prints a Markdown table and
# writes it to bench/out/checkpoint.md (raw results: checkpoint.jsonl).
#
# Settings: WORKER (default .dev/bin/yiflow-worker, else target/release/yiflow-worker, built when
# missing and cargo is there), DIR (where checkpoints are written, on the disk a training run would
# use; default the system's temp folder), CHECKPOINTS (per side, default 5), CPU (0: leave out the
# CPU rows), PYTHON (on the GPU machine: the Python whose torch/lib the worker runs against).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
out="$root/bench/out"
worker="${WORKER:-}"
if [ -z "$worker" ]; then
    for candidate in "$root/.dev/bin/yiflow-worker" "$root/target/release/yiflow-worker"; do
        if [ -x "$candidate" ]; then worker="$candidate"; break; fi
    done
fi
if [ -z "$worker" ] && command -v cargo >/dev/null; then
    (cd "$root" && bash scripts/install-libtorch.sh >/dev/null && cargo build --quiet --release -p yiflow-worker)
    worker="${CARGO_TARGET_DIR:-$root/target}/release/yiflow-worker"
fi
if [ -z "$worker" ] || [ ! -x "$worker" ]; then
    echo "no yiflow-worker binary: build it with 'cargo build --release -p yiflow-worker' or set WORKER" >&2
    exit 2
fi
gpu=""
if command -v nvidia-smi >/dev/null && gpu="$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1)" && [ -n "$gpu" ]; then
    # A worker copied to the GPU machine runs against that machine's torch (the same 2.11.0).
    if torch_lib="$("${PYTHON:-python3}" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))' 2>/dev/null)"; then
        export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    fi
fi
dir_args=()
if [ -n "${DIR:-}" ]; then dir_args=(--dir "$DIR"); fi
n="${CHECKPOINTS:-5}"

mkdir -p "$out"
results="$out/checkpoint.jsonl"
: > "$results"
run() {
    echo "running bench-checkpoint $*" >&2
    "$worker" bench-checkpoint "$@" --checkpoints "$n" "${dir_args[@]}" --json | tail -n 1 >> "$results"
}
if [ "${CPU:-1}" != 0 ]; then
    run --preset tiny --device cpu --seq 64 --batch 4 --every 3
    run --preset dense-125m --layers 4 --device cpu --seq 64 --batch 2 --every 3
fi
if [ -n "$gpu" ]; then
    # ~55 ms steps: checkpoints ~5 s apart, more than the ~2.6 s a 1.9 GB write took on an H200.
    run --preset dense-125m --device cuda --seq 1024 --batch 16 --every 100
fi

{
    echo "Checkpoint stall, $(date -u +%Y-%m-%d), $(nproc) CPU cores${gpu:+, $gpu}"
    echo
    echo "| model | device | state | interval | synchronous save (copy) | async stall (median) | async stall (max) | stall / save |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|"
    python3 - "$results" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    print(f"| {r['preset']} ({r['layers']} layers) | {r['device']} | {r['state_bytes'] / 1e6:,.0f} MB "
          f"| {r['interval_ms']:,.0f} ms | {r['sync_ms']:,.1f} ms ({r['copy_ms']:,.1f} ms) | {r['stall_ms']:,.1f} ms "
          f"| {max(r['stall_each_ms']):,.1f} ms | {100 * r['ratio']:.1f}% |")
PY
} | tee "$out/checkpoint.md"
