#!/usr/bin/env bash
# Creates the Python environment the data benchmarks and the tokenizer compatibility test use:
# bench/.venv (ignored by git) with the Hugging Face `tokenizers` package and, unless --tokenizers-only
# is given, datatrove. Safe to run again: it only installs what is missing.
#   bash bench/data/setup.sh                    # everything, for bench/data/run.sh
#   bash bench/data/setup.sh --tokenizers-only  # what `cargo test -p yiflow-stages` needs (CI)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
venv="$root/bench/.venv"
python="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
pip() { "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$@"; }
"$venv/bin/python" -c "import tokenizers" 2>/dev/null || pip "tokenizers>=0.22,<0.23"
if [ "${1:-}" != "--tokenizers-only" ]; then
    "$venv/bin/python" -c "import datatrove" 2>/dev/null || pip "datatrove[processing]"
    # datatrove 0.10's JsonlReader needs orjson and its English word tokenizer (MinHash, Gopher
    # rules) spaCy; its `processing` extra pulls in neither.
    "$venv/bin/python" -c "import orjson" 2>/dev/null || pip orjson
    "$venv/bin/python" -c "import spacy" 2>/dev/null || pip spacy
fi
"$venv/bin/python" - <<'PY'
import importlib
for name in ("tokenizers", "datatrove"):
    try:
        module = importlib.import_module(name)
        print(f"{name} {getattr(module, '__version__', '?')}")
    except ImportError:
        print(f"{name} not installed")
PY
