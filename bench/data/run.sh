#!/usr/bin/env bash
# The data-stage benchmark: filter throughput against datatrove, BPE training time and tokenization
# throughput against the Python `tokenizers` package, peak memory of each, on one input of at least
# 200 MB (the shared data plus generated pages). One command: `bash bench/data/run.sh`.
# Settings: MB (input size, default 210), VOCAB (default 32000), WORKERS (default: all cores),
# SHARED_DATA (default ../shared/data beside the repository).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
mb="${MB:-210}"
vocab="${VOCAB:-32000}"
workers="${WORKERS:-$(nproc)}"
shared="${SHARED_DATA:-$root/../shared/data}"
out="$root/bench/out/data"
python="$root/bench/.venv/bin/python"

bash bench/data/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
cargo build --quiet --release -p yiflow-stages --example data_bench
bin="$CARGO_TARGET_DIR/release/examples/data_bench"

mkdir -p "$out"
if [ ! -f "$out/input/.done-$mb" ]; then
    rm -rf "$out/input"
    "$bin" make-input "$shared" "$out/input" "$mb" > "$out/input.json"
    touch "$out/input/.done-$mb"
fi

# measure NAME COMMAND...: stdout -> NAME.json, /usr/bin/time -v -> NAME.time
measure() {
    local name="$1"
    shift
    rm -rf "${out:?}/$name"
    echo "running $name" >&2
    /usr/bin/time -v -o "$out/$name.time" "$@" > "$out/$name.json"
}

measure filter-yiflow "$bin" filter "$out/input" "$out/filter-yiflow"
measure filter-datatrove "$python" bench/data/peers.py datatrove "$out/input" "$out/filter-datatrove" "$workers"
measure bpe-yiflow "$bin" bpe "$out/input" "$out/bpe-yiflow" "$vocab"
measure bpe-python "$python" bench/data/peers.py bpe "$out/input" "$out/bpe-yiflow/tokenizer.json" "$vocab" "$out/bpe-python.tokenizer.json"
measure tokenize-yiflow "$bin" tokenize "$out/input" "$out/bpe-yiflow" "$out/tokenize-yiflow"
measure tokenize-python "$python" bench/data/peers.py tokenize "$out/input" "$out/bpe-yiflow/tokenizer.json"

"$python" - "$out" "$workers" <<'PY'
import json, os, re, sys
out, workers = sys.argv[1], sys.argv[2]
def load(name):
    result = json.loads(open(os.path.join(out, name + ".json")).read().strip().splitlines()[-1])
    time_text = open(os.path.join(out, name + ".time")).read()
    result["rss_mb"] = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", time_text).group(1)) / 1024
    return result
r = {n: load(n) for n in ["filter-yiflow", "filter-datatrove", "bpe-yiflow", "bpe-python", "tokenize-yiflow", "tokenize-python"]}
inp = json.load(open(os.path.join(out, "input.json")))
print(f"\ninput: {inp['mb']:.1f} MB of text in {inp['docs']} documents; {os.cpu_count()} cores, {workers} datatrove workers\n")
print(f"| task | yiflow | peer | yiflow / peer | peak RSS yiflow | peak RSS peer |")
print(f"|---|---:|---:|---:|---:|---:|")
def row(task, a, b, key, unit, higher_better):
    x, y = r[a][key], r[b][key]
    ratio = x / y if higher_better else y / x
    print(f"| {task} | {x:.2f} {unit} | {y:.2f} {unit} | {ratio:.2f}x | {r[a]['rss_mb']:.0f} MB | {r[b]['rss_mb']:.0f} MB |")
row("filter vs datatrove (quality+repetition+PII+MinHash)", "filter-yiflow", "filter-datatrove", "mb_per_s", "MB/s", True)
row("BPE training vs tokenizers (Python)", "bpe-yiflow", "bpe-python", "seconds", "s", False)
row("tokenization vs tokenizers (Python)", "tokenize-yiflow", "tokenize-python", "mb_per_s", "MB/s", True)
print(f"\nkept documents: yiflow {r['filter-yiflow']['docs_kept']} of {r['filter-yiflow']['docs_in']}, datatrove {r['filter-datatrove']['docs_kept']}")
print("ratios: higher is better for yiflow (for BPE, python seconds / yiflow seconds)")
PY
