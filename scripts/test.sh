#!/usr/bin/env bash
# The test command of the README and of CI: everything the tests need is installed on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --all-targets
cargo test --no-fail-fast
