#!/usr/bin/env bash
# The pretrain stage on a GPU through the real `yiflow run`: bench/pretrain-gpu/recipe.kdl (synthetic
# data -> BPE -> token shards -> dense ~125M model in three phases, bf16). Run ON THE GPU MACHINE
# from the repository root. Prints what each stage took and the training's throughput, MFU, losses
# and checkpoint stalls from the artifact's metrics.jsonl and train.json; writes the same to
# bench/out/pretrain-gpu.md.
#
# Settings: BIN (the folder with release builds of `yiflow` and `yiflow-worker`; default .dev/bin,
# else target/release), PYTHON (the Python whose torch/lib the worker runs against).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
here="$root/bench/pretrain-gpu"
out="$root/bench/out"
bin="${BIN:-}"
if [ -z "$bin" ]; then
    for candidate in "$root/.dev/bin" "$root/target/release"; do
        if [ -x "$candidate/yiflow" ] && [ -x "$candidate/yiflow-worker" ]; then bin="$candidate"; break; fi
    done
fi
if [ -z "$bin" ]; then
    echo "no release build: cargo build --release && cargo build --release -p yiflow-worker, or set BIN" >&2
    exit 2
fi
if torch_lib="$("${PYTHON:-python3}" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))' 2>/dev/null)"; then
    export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
export YIFLOW_WORKER="$bin/yiflow-worker"
mkdir -p "$out"
gpu="$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1 || true)"
started=$(date +%s.%N)
"$bin/yiflow" run "$here/recipe.kdl" 2>&1 | tee "$out/pretrain-gpu.log"
finished=$(date +%s.%N)
"$bin/yiflow" status "$here/recipe.kdl" | tee -a "$out/pretrain-gpu.log"
artifact="$(ls -d "$here"/.yiflow/artifacts/*/ | while read -r d; do [ -f "$d/train.json" ] && echo "$d"; done | head -n 1)"
python3 - "$artifact" "$gpu" "$started" "$finished" <<'PY' | tee "$out/pretrain-gpu.md"
import json, statistics, sys
art, gpu, t0, t1 = sys.argv[1], sys.argv[2] or "no GPU", float(sys.argv[3]), float(sys.argv[4])
train = json.load(open(art + "/train.json"))
steps = [json.loads(l) for l in open(art + "/metrics.jsonl")]
print(f"`yiflow run bench/pretrain-gpu/recipe.kdl` on {gpu} ({train['device']}): {t1 - t0:.0f} s for all stages")
print()
print("| phase | steps | seq x batch | tokens/s (median) | MFU (median) | loss first -> last |")
print("|---|---:|---|---:|---:|---|")
for phase in dict.fromkeys(m["phase"] for m in steps):
    ms = [m for m in steps if m["phase"] == phase]
    timed = ms[3:] or ms  # the first steps of a phase include allocation and kernel selection
    shapes = ", ".join(dict.fromkeys(f"{m['seq']} x {m['batch']}" for m in ms))
    print(f"| {phase} | {len(ms)} | {shapes} | {statistics.median(m['tokens_per_s'] for m in timed):,.0f} "
          f"| {100 * statistics.median(m['mfu'] for m in timed):.1f}% | {ms[0]['loss']:.3f} -> {ms[-1]['loss']:.3f} |")
stalls = train["checkpoint_stall_ms"]
print()
print(f"{train['steps']} steps, {train['tokens']:,} tokens, {train['parameters']:,} parameters; final loss "
      f"{train['final_loss']:.3f}, validation loss {train['val_loss']}; rollbacks {train['rollbacks']}; "
      f"checkpoint stalls (ms): {', '.join(f'{s:.0f}' for s in stalls) or 'none'}")
PY
