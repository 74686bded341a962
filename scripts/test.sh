#!/usr/bin/env bash
# The test command of the README and of CI: everything the tests need is installed on first use.
#
# Order matters: the worker (the only binary that links LibTorch) is built on its own, beside `yiflow`
# in target/debug, before the end-to-end tests that run ML stages look for it there.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-libtorch.sh
cargo build --all-targets
cargo build -p yiflow-worker
cargo test --no-fail-fast
cargo test -p yiflow-stages --features torch --no-fail-fast
cargo test -p yiflow-worker --no-fail-fast
