"""Turns the benchmark's JSON lines into the Markdown table of bench/out/train-throughput.md.

usage: report.py peak "GPU NAME"          -> the GPU's dense bf16 peak in TFLOP/s (0 if unknown)
       report.py table RESULTS.jsonl "GPU NAME" PEAK
"""

import json
import sys

# Dense bf16 peaks without sparsity, from NVIDIA's datasheets (H100 SXM and H200 share the
# H100's 989.4 TFLOP/s; H100 PCIe 756; A100 312; L40S 362; GH200 989).
PEAKS = [("H200", 989.0), ("GH200", 989.0), ("H100 PCIe", 756.0), ("H100 NVL", 835.0),
         ("H100", 989.0), ("A100", 312.0), ("L40S", 362.0)]


def peak_of(name):
    for key, tflops in PEAKS:
        if key in name:
            return tflops
    return 0.0


def table(path, gpu, peak):
    rows = [json.loads(line) for line in open(path) if line.strip().startswith("{")]
    out = []
    out.append(f"GPU: {gpu}; peak dense bf16 {peak:g} TFLOP/s. "
               "MFU = tokens/s x FLOPs per token / peak, FLOPs per token = 6 x active non-embedding "
               "matrix parameters (output projection included, router included, routed experts "
               "counted top-k only) + 12 x layers x d_model x seq for attention (PaLM's formula, "
               "causality not halved).\n")
    out.append("| model | implementation | variant | tokens/s | ms/step | MFU | vs PyTorch eager | loss first -> last |")
    out.append("|---|---|---|---:|---:|---:|---:|---|")
    base = {}
    for r in rows:
        if r.get("implementation") == "pytorch" and r.get("variant") in ("eager", "loop") and "error" not in r:
            base[r["preset"]] = (r["variant"], r["tokens_per_s"])
    for r in rows:
        name = f"{r['preset']} ({r.get('seq', '?')}x{r.get('batch', '?')})"
        if "error" in r:
            out.append(f"| {name} | {r['implementation']} | {r['variant']} | failed: {r['error']} | | | | |")
            continue
        mfu = r["tokens_per_s"] * r["flops_per_token"] / (peak * 1e12) if peak else float("nan")
        ratio = ""
        if r["preset"] in base:
            variant, tps = base[r["preset"]]
            ratio = f"{r['tokens_per_s'] / tps:.2f}x" + (" (of loop)" if variant == "loop" else "")
        out.append(f"| {name} | {r['implementation']} | {r['variant']} | {r['tokens_per_s']:,.0f} | "
                   f"{r['ms_per_step']:.1f} | {100 * mfu:.1f}% | {ratio} | "
                   f"{r['loss_first']:.3f} -> {r['loss_last']:.3f} |")
    # The two implementations must count the same model.
    notes = []
    for preset in sorted({r["preset"] for r in rows if "error" not in r}):
        counts = {(r["implementation"], round(r["flops_per_token"])) for r in rows
                  if r["preset"] == preset and "error" not in r}
        flops = {f for _, f in counts}
        verdict = "agree" if len(flops) == 1 else "DIFFER"
        notes.append(f"- {preset}: FLOPs/token {', '.join(f'{i} {f:,}' for i, f in sorted(counts))} ({verdict})")
    out.append("\n" + "\n".join(notes))
    return "\n".join(out)


if __name__ == "__main__":
    if sys.argv[1] == "peak":
        print(peak_of(sys.argv[2]))
    elif sys.argv[1] == "table":
        print(table(sys.argv[2], sys.argv[3], float(sys.argv[4])))
    else:
        sys.exit(__doc__)
