#!/usr/bin/env bash
# The README's first command: builds yiflow and its LibTorch worker (release) and runs the quickstart
# recipe, the whole lifecycle on CPU. LibTorch comes from the PyPI wheel, installed once per user.
# Extra arguments go to `yiflow run` (e.g. `bash scripts/quickstart.sh --force pretrain`).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-libtorch.sh
cargo build --release -p yiflow
cargo build --release -p yiflow-worker
exec target/release/yiflow run recipes/quickstart.kdl "$@"
