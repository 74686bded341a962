#!/usr/bin/env bash
# The test command of the README and of CI: everything the tests need is installed on first use.
#
# Order matters: the worker (the only binary that links LibTorch) is built on its own, beside `yiflow`
# in target/debug, before the end-to-end tests that run ML stages look for it there.
#
# Run as root where Slurm can be installed (apt-get), it also starts the one-node test cluster of
# scripts/slurm-up.sh for tests/slurm.rs, stops it again on exit (only if it started it), and sets
# YIFLOW_REQUIRE_SLURM=1 so that those tests fail instead of skipping when the cluster is missing.
# YIFLOW_SKIP_SLURM=1 leaves Slurm out (its tests then skip, saying why).
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $EUID -eq 0 && ${YIFLOW_SKIP_SLURM:-0} != 1 ]] &&
    { command -v slurmctld >/dev/null || command -v apt-get >/dev/null; }; then
    if sinfo -h >/dev/null 2>&1; then
        echo "test.sh: using the Slurm cluster that is already running"
    else
        trap 'scripts/slurm-down.sh || true' EXIT
        scripts/slurm-up.sh
    fi
    export YIFLOW_REQUIRE_SLURM=1
fi

bash scripts/install-libtorch.sh
# The Hugging Face `tokenizers` package, which must load yiflow's tokenizer.json and encode the same
# ids (stages/src/bpe.rs); the test fails instead of skipping when it is missing.
bash bench/data/setup.sh --tokenizers-only
export YIFLOW_PYTHON="$PWD/bench/.venv/bin/python" YIFLOW_REQUIRE_TOKENIZERS=1
# The PyTorch side of the GPU benchmark, checked on the CPU with the torch just installed (seconds).
(cd bench/train-throughput && "${XDG_CACHE_HOME:-$HOME/.cache}/yiflow/torch-2.11.0/bin/python" test_model.py)
cargo build --all-targets
cargo build -p yiflow-worker
# The pretrain end-to-end tests fail instead of skipping when the worker is missing.
export YIFLOW_REQUIRE_WORKER=1
cargo test --no-fail-fast
# One test at a time: LibTorch has one global random generator, and tests that seed it and compare
# two runs (model initialisation, optimizer steps) would see each other's draws when run in parallel.
cargo test -p yiflow-stages --features torch --no-fail-fast -- --test-threads=1
cargo test -p yiflow-worker --no-fail-fast
