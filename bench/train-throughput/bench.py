"""PyTorch side of the training-throughput benchmark: the same step as `yiflow-worker bench-train`
(forward, cross-entropy in f32 plus 0.01 x the MoE balancing loss, backward, AdamW) on the same
preset and batch shape, timed the same way (warm-up, then whole steps between two
torch.cuda.synchronize calls). Prints one JSON object per variant.

Weights and activations are bf16 (the model is cast, like yiflow's `VarStore::bfloat16`); the
optimizer is torch.optim.AdamW(fused=True) over the bf16 parameters, decay 0.01 on matrices but
the embedding.

usage: bench.py PRESET VARIANT [--seq 1024] [--batch 32] [--steps 20] [--warmup 5] [--device cuda]
                [--no-optimizer] [--trace FILE]
  VARIANT: eager | compile (dense); loop | grouped | grouped-compile (MoE)
  --device cpu runs it on the CPU in f32 (test_model.py does, so that the script is checked
  without a GPU).
"""

import argparse
import json
import sys
import time

import torch
import torch.nn.functional as F

from model import Transformer

AUX_WEIGHT = 0.01


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("preset")
    parser.add_argument("variant", choices=["eager", "compile", "loop", "grouped", "grouped-compile"])
    parser.add_argument("--seq", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--peak-tflops", type=float, default=989.0)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--trace", metavar="FILE",
                        help="after timing, record 3 steps with torch.profiler into FILE as a Chrome trace "
                             "(kernels.py summarises it)")
    parser.add_argument("--no-optimizer", action="store_true",
                        help="time forward and backward only, to see the optimizer's share")
    args = parser.parse_args()

    device = torch.device(args.device)
    cuda = device.type == "cuda"
    torch.manual_seed(1234)
    moe = "loop" if args.variant == "loop" else "grouped"
    compiled = args.variant.endswith("compile")
    model = Transformer(args.preset, moe=moe).to(device=device,
                                                 dtype=torch.bfloat16 if cuda else torch.float32)
    is_moe = model.config["experts"] is not None
    if is_moe == (args.variant in ("eager", "compile")):
        sys.exit(f"variant {args.variant} does not apply to preset {args.preset}")
    # yiflow's decay rule (stages/src/train/adamw.rs): matrices decay, vectors and the embedding not.
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decays = [p.dim() >= 2 and not n.startswith("embed.") for n, p in params]
    groups = [
        {"params": [p for (_, p), d in zip(params, decays) if d], "weight_decay": 0.01},
        {"params": [p for (_, p), d in zip(params, decays) if not d], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=args.lr, betas=(0.9, 0.999), eps=1e-8, fused=cuda)

    vocab = model.config["vocab"]
    tokens = torch.randint(vocab, (args.batch, args.seq + 1), device=device)
    inputs, targets = tokens[:, :-1], tokens[:, 1:].reshape(-1)

    def loss_of(x, y):
        logits, aux = model(x)
        return F.cross_entropy(logits.view(-1, vocab).float(), y) + AUX_WEIGHT * aux

    loss_fn = torch.compile(loss_of) if compiled else loss_of

    def step():
        loss = loss_fn(inputs, targets)
        loss.backward()
        if not args.no_optimizer:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    def synchronize():
        if cuda:
            torch.cuda.synchronize()

    first = None
    for _ in range(args.warmup):
        loss = step()
        first = loss if first is None else first
    synchronize()
    started = time.perf_counter()
    for _ in range(args.steps):
        last = step()
    synchronize()
    seconds = time.perf_counter() - started

    if args.trace:
        from torch.profiler import ProfilerActivity, profile
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
        with profile(activities=activities) as prof:
            for _ in range(3):
                step()
            synchronize()
        prof.export_chrome_trace(args.trace)

    tokens_per_s = args.steps * args.batch * args.seq / seconds
    flops = model.flops_per_token(args.seq)
    n_params = sum(p.numel() for _, p in params)
    print(json.dumps({
        "implementation": "pytorch",
        "variant": args.variant + (" fwd+bwd" if args.no_optimizer else ""),
        "preset": args.preset,
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "dtype": "bf16" if cuda else "f32",
        "seq": args.seq,
        "batch": args.batch,
        "steps": args.steps,
        "warmup": args.warmup,
        "params": n_params,
        "flops_per_token": flops,
        "ms_per_step": 1000 * seconds / args.steps,
        "tokens_per_s": tokens_per_s,
        "peak_tflops": args.peak_tflops,
        "mfu": tokens_per_s * flops / (args.peak_tflops * 1e12),
        "loss_first": float(first) if first is not None else float("nan"),
        "loss_last": float(last),
        "torch": torch.__version__,
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
    }), flush=True)


if __name__ == "__main__":
    main()
