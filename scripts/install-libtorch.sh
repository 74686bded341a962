#!/usr/bin/env bash
# Makes LibTorch available to the worker build, so that `cargo build -p yiflow-worker` and
# `cargo test -p yiflow-stages --features torch` work in a fresh clone with no variables to set.
#
# tch =0.24.0 needs PyTorch 2.11.0. Its only source here is the PyPI wheel, so this script installs
# `torch==2.11.0` into a virtual environment in a per-user cache folder shared by every clone and CI
# run (the wheel and its CUDA libraries weigh ~4.6 GB: fetched once per user, not once per checkout):
#
#     ${XDG_CACHE_HOME:-$HOME/.cache}/yiflow/torch-2.11.0
#
# and links the wheel's `torch` folder (headers in include/, libraries in lib/) into this checkout as
# `.libtorch`, which `.cargo/config.toml` hands to torch-sys as LIBTORCH. Running it again is cheap:
# an existing install is detected and left alone; only the link is (re)made.
#
# Usage: scripts/install-libtorch.sh [--print]
#   --print   print the libtorch folder (for LIBTORCH=... or LD_LIBRARY_PATH=.../lib) and nothing else
# Environment: PYTHON (default python3) creates the venv on a fresh machine; it must be 3.10 to 3.14.
set -euo pipefail

readonly TORCH_VERSION=2.11.0
cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/yiflow"
venv="$cache_root/torch-$TORCH_VERSION"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
print_only=0
case "${1-}" in
    --print) print_only=1 ;;
    "") ;;
    *) echo "usage: $0 [--print]" >&2; exit 2 ;;
esac

say() { [ "$print_only" = 1 ] || echo "install-libtorch: $*" >&2; }

# The torch package folder of a complete install under $1, or nothing. Complete means pip finished:
# the version's dist-info is written after the files, and the headers and core library are there.
torch_dir_of() {
    local dir
    for dir in "$1"/lib/python3*/site-packages/torch; do
        if [ -f "$dir/lib/libtorch_cpu.so" ] && [ -f "$dir/include/torch/script.h" ] \
            && compgen -G "$(dirname "$dir")/torch-$TORCH_VERSION.dist-info/METADATA" >/dev/null; then
            echo "$dir"
            return 0
        fi
    done
    return 1
}

if ! torch_dir="$(torch_dir_of "$venv")"; then
    python="${PYTHON:-python3}"
    command -v "$python" >/dev/null || { echo "install-libtorch: $python not found; set PYTHON to a Python 3.10-3.14" >&2; exit 1; }
    "$python" -c 'import sys; sys.exit(0 if (3, 10) <= sys.version_info[:2] <= (3, 14) else 1)' \
        || { echo "install-libtorch: $python is not Python 3.10-3.14 (torch $TORCH_VERSION wheels need one); set PYTHON" >&2; exit 1; }
    mkdir -p "$cache_root"
    # One installer at a time per user: a second clone or CI job waits here, then finds the install.
    if command -v flock >/dev/null; then
        exec 9>"$cache_root/.install-torch-$TORCH_VERSION.lock"
        say "waiting for the install lock $cache_root/.install-torch-$TORCH_VERSION.lock"
        flock 9
    fi
    if ! torch_dir="$(torch_dir_of "$venv")"; then
        [ -e "$venv" ] && { say "removing the incomplete install at $venv"; rm -rf "$venv"; }
        # Build beside the final folder and rename it into place, so that an interrupted install
        # never looks complete. (The venv's console scripts keep the staging path in their #! lines;
        # nothing here uses them, and `python -m pip` works wherever the folder lives.)
        staging="$venv.partial"
        rm -rf "$staging"
        say "creating $venv with torch==$TORCH_VERSION from PyPI (about 4.6 GB, once per user)"
        "$python" -m venv "$staging"
        "$staging/bin/python" -m pip install --disable-pip-version-check --no-input "torch==$TORCH_VERSION" >&2
        mv "$staging" "$venv"
        torch_dir="$(torch_dir_of "$venv")" || { echo "install-libtorch: pip finished but $venv holds no complete torch $TORCH_VERSION" >&2; exit 1; }
    fi
else
    say "torch $TORCH_VERSION is already installed in $venv"
fi

if [ "$print_only" = 1 ]; then
    echo "$torch_dir"
    exit 0
fi

link="$repo/.libtorch"
if [ -e "$link" ] && [ ! -L "$link" ]; then
    echo "install-libtorch: $link exists and is not a link; move it away, or set LIBTORCH to your own libtorch instead" >&2
    exit 1
fi
if [ "$(readlink "$link" 2>/dev/null)" != "$torch_dir" ]; then
    ln -sfn "$torch_dir" "$link"
    say "linked $link -> $torch_dir"
fi
say "done: build the worker with \`cargo build -p yiflow-worker\`"
