#!/usr/bin/env bash
# Builds what a run on the GPU machine needs (it has PyTorch 2.11 but no Rust) and puts it, stripped,
# into .dev/bin (ignored by git; pass it as the device tool's `carry`): release `yiflow` and
# `yiflow-worker`, and the `yiflow-stages` unit-test binary for the tests marked "needs a CUDA
# device". Then on the GPU machine: `bash bench/gpu-all.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-libtorch.sh
cargo build --release -p yiflow
cargo build --release -p yiflow-worker
tests="$(cargo test --release -p yiflow-stages --features torch --no-run --message-format=json 2>/dev/null |
    python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["lib"]:
        print(m["executable"])')"
mkdir -p .dev/bin
strip -o .dev/bin/yiflow target/release/yiflow
strip -o .dev/bin/yiflow-worker target/release/yiflow-worker
strip -o .dev/bin/stages-tests "$tests"
ls -l .dev/bin
