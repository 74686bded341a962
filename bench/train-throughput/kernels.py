"""Summarises the GPU kernels of a Chrome trace written by PyTorch's profiler: `yiflow-worker
bench-train --trace FILE` and `bench.py --trace FILE` both record 3 training steps that way, so the
two sides of the benchmark are broken down by the same code.

usage: kernels.py TRACE.json [TRACE.json ...] [--top 25]

For each trace: GPU time per step by kind of kernel (matrix products, attention, elementwise,
reductions and norms, softmax and cross-entropy, optimizer, copies and fills, other), the busy share
of the traced span, then the most expensive kernels by name. The kinds are read off kernel names
(cuBLAS/CUTLASS GEMMs, flash attention, ATen's elementwise and reduce templates), so they are a
guide; the per-name rows are exact.
"""

import argparse
import collections
import json
import re

STEPS = 3

KINDS = [
    ("attention", re.compile(r"flash|fmha|attention|sdpa|cudnn_generated_fort_native_sdpa", re.I)),
    ("matmul", re.compile(r"gemm|cutlass|sm90_xmma|nvjet|cublas|_grouped_mm|wgmma|xmma", re.I)),
    ("optimizer", re.compile(r"adam|multi_tensor_apply|FusedOptimizer", re.I)),
    ("softmax/CE", re.compile(r"softmax|nll_loss|cross_entropy|log_softmax", re.I)),
    ("norm/reduce", re.compile(r"reduce|norm|rms|welford|sum_kernel|mean", re.I)),
    ("copy/fill", re.compile(r"copy|memcpy|memset|fill|cat_|CatArray|index|gather|scatter", re.I)),
    ("elementwise", re.compile(r"elementwise|vectorized|unrolled|pointwise|triton_poi|silu|mul|add", re.I)),
]


def kind_of(name):
    for kind, pattern in KINDS:
        if pattern.search(name):
            return kind
    return "other"


def load(path):
    with open(path) as f:
        trace = json.load(f)
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    kernels = [e for e in events if e.get("ph") == "X" and e.get("cat") in ("kernel", "gpu_memcpy", "gpu_memset")]
    return kernels


def summarise(path, top):
    kernels = load(path)
    if not kernels:
        return f"{path}: no GPU kernels in the trace\n"
    busy = sum(k["dur"] for k in kernels)
    span = max(k["ts"] + k["dur"] for k in kernels) - min(k["ts"] for k in kernels)
    by_kind = collections.Counter()
    by_name = collections.Counter()
    calls = collections.Counter()
    for k in kernels:
        by_kind[kind_of(k["name"])] += k["dur"]
        by_name[k["name"]] += k["dur"]
        calls[k["name"]] += 1
    out = [f"## {path}",
           f"{len(kernels) / STEPS:.0f} kernels per step; GPU busy {busy / STEPS / 1000:.2f} ms per step "
           f"of a {span / STEPS / 1000:.2f} ms span ({100 * busy / span:.1f}% busy)", "",
           "| kind | ms/step | share |", "|---|---:|---:|"]
    for kind, us in by_kind.most_common():
        out.append(f"| {kind} | {us / STEPS / 1000:.2f} | {100 * us / busy:.1f}% |")
    out += ["", "| kernel | kind | calls/step | ms/step | share |", "|---|---|---:|---:|---:|"]
    for name, us in by_name.most_common(top):
        short = name if len(name) <= 110 else name[:107] + "..."
        short = short.replace("|", "\\|")
        out.append(f"| `{short}` | {kind_of(name)} | {calls[name] / STEPS:.0f} | "
                   f"{us / STEPS / 1000:.3f} | {100 * us / busy:.1f}% |")
    return "\n".join(out) + "\n"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("traces", nargs="+")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    for path in args.traces:
        print(summarise(path, args.top))


if __name__ == "__main__":
    main()
