#!/usr/bin/env bash
# The engine-overhead benchmark in one command: `bash bench/engine-overhead/run.sh`.
# Installs Snakemake and DVC (pinned, from PyPI) into bench/.venv, builds the release `yiflow`, then times
# the same layered DAG of trivial command stages in yiflow, Snakemake, DVC and a plain bash script
# (see README.md beside this file). Prints a markdown table and writes it to bench/out/engine-overhead.md.
# Settings: SIZES (default 10,100,1000), TOOLS (default bash,yiflow,yiflow-j1,snakemake,dvc; yiflow-j1 is
# yiflow with -j 1), TIMEOUT (seconds per invocation, default 240), JOBS (default: the number of cores),
# FAN_IN (inputs per stage, default 2).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
venv="$root/bench/.venv"
snakemake_version="9.27.1"
dvc_version="3.67.1"

if [ ! -x "$venv/bin/python" ]; then
    "${PYTHON:-python3}" -m venv "$venv"
fi
installed() { "$venv/bin/python" -m pip show "$1" 2>/dev/null | sed -n 's/^Version: //p'; }
if [ "$(installed snakemake)" != "$snakemake_version" ] || [ "$(installed dvc)" != "$dvc_version" ]; then
    echo "installing snakemake $snakemake_version and dvc $dvc_version into $venv" >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        "snakemake==$snakemake_version" "dvc==$dvc_version"
fi
versions="snakemake $(installed snakemake), dvc $(installed dvc), $(bash --version | head -1 | sed 's/ (.*//')"
echo "$versions" >&2

cargo build --release -p yiflow
target="${CARGO_TARGET_DIR:-$root/target}"
versions="$("$target/release/yiflow" --version), $versions"

"$venv/bin/python" bench/engine-overhead/bench.py \
    --yiflow "$target/release/yiflow" \
    --venv "$venv" \
    --sizes "${SIZES:-10,100,1000}" \
    --tools "${TOOLS:-bash,yiflow,yiflow-j1,snakemake,dvc}" \
    --timeout "${TIMEOUT:-240}" \
    --jobs "${JOBS:-$(nproc)}" \
    --fan-in "${FAN_IN:-2}" \
    --versions "Versions: $versions." \
    --out bench/out/engine-overhead.md
