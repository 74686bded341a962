"""The yiflow model (stages/src/model/) re-written in plain PyTorch for the training-throughput
benchmark: the same presets, layer layout, weight shapes and initialisation, so that a step of
either does the same arithmetic on the same batch.

Decoder-only: token embedding; per layer a pre-norm GQA attention (RMSNorm, one fused QKV
projection, rotate-half RoPE with base 10000 computed in float64, scaled_dot_product_attention with
is_causal and enable_gqa) and a pre-norm SwiGLU feed-forward network (gate and up as one matrix),
dense or MoE; a final RMSNorm and an untied output projection. The MoE routes in f32 (softmax,
top-k, renormalised weights), adds the Switch balancing loss, and runs its experts either as a naive
per-expert loop (experts as separate modules, as Hugging Face's Mixtral does) or as one grouped GEMM
per projection over the tokens sorted by expert (torch._grouped_mm), as yiflow does.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

INIT_STD = 0.02

# The presets of stages/src/model/config.rs that the benchmark runs (every layer full attention).
PRESETS = {
    "dense-125m": dict(vocab=32768, layers=12, d_model=768, heads=12, kv_heads=4, ffn=3328,
                       experts=None, rope_base=10_000.0, norm_eps=1e-5),
    # 16 experts of hidden 1664, each cut in 2 segments, top-2 whole experts = top-4 of 32.
    "moe-125m": dict(vocab=32768, layers=12, d_model=768, heads=12, kv_heads=4, ffn=1664,
                     experts=dict(count=16, active=2, segments=2), rope_base=10_000.0,
                     norm_eps=1e-5),
}


def rope_cos_sin(seq, head_dim, base, dtype, device):
    inv_freq = base ** (-2.0 * torch.arange(head_dim // 2, dtype=torch.float64, device=device)
                        / head_dim)
    angles = torch.outer(torch.arange(seq, dtype=torch.float64, device=device), inv_freq)
    angles = torch.cat([angles, angles], -1)
    return angles.cos().to(dtype), angles.sin().to(dtype)


def apply_rope(x, cos, sin):
    x1, x2 = x.chunk(2, -1)
    return x * cos + torch.cat([-x2, x1], -1) * sin


class Attention(nn.Module):
    def __init__(self, c, out_std):
        super().__init__()
        self.heads, self.kv_heads = c["heads"], c["kv_heads"]
        self.head_dim = c["d_model"] // c["heads"]
        d = c["d_model"]
        self.qkv = nn.Linear(d, (self.heads + 2 * self.kv_heads) * self.head_dim, bias=False)
        self.out = nn.Linear(self.heads * self.head_dim, d, bias=False)
        nn.init.normal_(self.qkv.weight, std=INIT_STD)
        nn.init.normal_(self.out.weight, std=out_std)

    def forward(self, x, cos, sin):
        b, t, _ = x.shape
        kv = self.kv_heads * self.head_dim
        q, k, v = self.qkv(x).split([self.heads * self.head_dim, kv, kv], -1)
        q = apply_rope(q.view(b, t, self.heads, self.head_dim).transpose(1, 2), cos, sin)
        k = apply_rope(k.view(b, t, self.kv_heads, self.head_dim).transpose(1, 2), cos, sin)
        v = v.view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        return self.out(y.transpose(1, 2).reshape(b, t, self.heads * self.head_dim))


class Mlp(nn.Module):
    def __init__(self, d, hidden, out_std):
        super().__init__()
        self.gate_up = nn.Linear(d, 2 * hidden, bias=False)
        self.down = nn.Linear(hidden, d, bias=False)
        nn.init.normal_(self.gate_up.weight, std=INIT_STD)
        nn.init.normal_(self.down.weight, std=out_std)

    def forward(self, x):
        gate, up = self.gate_up(x).chunk(2, -1)
        return self.down(F.silu(gate) * up)


def route(router, x, top_k):
    probs = router(x).float().softmax(-1)
    weights, chosen = probs.topk(top_k, -1)
    return probs, weights / weights.sum(-1, keepdim=True), chosen


def balancing_loss(probs, load):
    return (probs.mean(0) * load.detach()).sum() * probs.shape[1]


class MoeGrouped(nn.Module):
    """All experts at once: tokens sorted by expert, one torch._grouped_mm per projection."""

    def __init__(self, c, out_std):
        super().__init__()
        e = c["experts"]
        d, self.experts = c["d_model"], e["count"] * e["segments"]
        self.hidden, self.top_k = c["ffn"] // e["segments"], e["active"] * e["segments"]
        self.router = nn.Linear(d, self.experts, bias=False)
        nn.init.normal_(self.router.weight, std=INIT_STD)
        self.gate_up = nn.Parameter(torch.randn(self.experts, 2 * self.hidden, d) * INIT_STD)
        self.down = nn.Parameter(torch.randn(self.experts, d, self.hidden) * out_std)

    def forward(self, x):
        shape = x.shape
        x = x.reshape(-1, shape[-1])
        n = x.shape[0]
        probs, weights, chosen = route(self.router, x, self.top_k)
        assignments = chosen.flatten()
        _, order = assignments.sort(stable=True)
        token_of = order // self.top_k
        # scatter_add instead of bincount: a static shape, so torch.compile keeps one graph.
        counts = torch.zeros(self.experts, dtype=torch.int32, device=x.device).scatter_add_(
            0, assignments, torch.ones_like(assignments, dtype=torch.int32))
        offsets = counts.cumsum(0, dtype=torch.int32)
        inputs = x.index_select(0, token_of)
        gate, up = torch._grouped_mm(inputs, self.gate_up.transpose(1, 2), offs=offsets).chunk(2, -1)
        out = torch._grouped_mm(F.silu(gate) * up, self.down.transpose(1, 2), offs=offsets)
        gates = weights.flatten().index_select(0, order).to(x.dtype).unsqueeze(-1)
        y = torch.zeros_like(x).index_add(0, token_of, out * gates)
        load = counts.float() / (n * self.top_k)
        return y.reshape(shape), balancing_loss(probs, load)


class Expert(nn.Module):
    def __init__(self, d, hidden, out_std):
        super().__init__()
        self.gate_up = nn.Parameter(torch.randn(2 * hidden, d) * INIT_STD)
        self.down = nn.Parameter(torch.randn(d, hidden) * out_std)

    def forward(self, x):
        gate, up = F.linear(x, self.gate_up).chunk(2, -1)
        return F.linear(F.silu(gate) * up, self.down)


class MoeLoop(nn.Module):
    """The naive way: a Python loop over the experts, each gathering its tokens."""

    def __init__(self, c, out_std):
        super().__init__()
        e = c["experts"]
        d, self.experts = c["d_model"], e["count"] * e["segments"]
        hidden, self.top_k = c["ffn"] // e["segments"], e["active"] * e["segments"]
        self.router = nn.Linear(d, self.experts, bias=False)
        nn.init.normal_(self.router.weight, std=INIT_STD)
        self.expert = nn.ModuleList(Expert(d, hidden, out_std) for _ in range(self.experts))

    def forward(self, x):
        shape = x.shape
        x = x.reshape(-1, shape[-1])
        n = x.shape[0]
        probs, weights, chosen = route(self.router, x, self.top_k)
        y = torch.zeros_like(x)
        for e, expert in enumerate(self.expert):
            token, slot = torch.where(chosen == e)
            if token.numel() == 0:
                continue
            out = expert(x[token]) * weights[token, slot, None].to(x.dtype)
            y.index_add_(0, token, out)
        load = torch.bincount(chosen.flatten(), minlength=self.experts).float() / (n * self.top_k)
        return y.reshape(shape), balancing_loss(probs, load)


class Block(nn.Module):
    def __init__(self, c, out_std, moe):
        super().__init__()
        d = c["d_model"]
        self.attn_norm = nn.RMSNorm(d, eps=c["norm_eps"])
        self.attn = Attention(c, out_std)
        self.ffn_norm = nn.RMSNorm(d, eps=c["norm_eps"])
        if c["experts"] is None:
            self.ffn, self.moe = Mlp(d, c["ffn"], out_std), False
        else:
            self.ffn, self.moe = {"grouped": MoeGrouped, "loop": MoeLoop}[moe](c, out_std), True

    def forward(self, x, cos, sin):
        h = x + self.attn(self.attn_norm(x), cos, sin)
        if self.moe:
            y, aux = self.ffn(self.ffn_norm(h))
            return h + y, aux
        return h + self.ffn(self.ffn_norm(h)), None


class Transformer(nn.Module):
    def __init__(self, preset, moe="grouped"):
        super().__init__()
        c = PRESETS[preset]
        self.config = c
        out_std = INIT_STD / math.sqrt(2 * c["layers"])
        self.embed = nn.Embedding(c["vocab"], c["d_model"])
        nn.init.normal_(self.embed.weight, std=INIT_STD)
        self.layers = nn.ModuleList(Block(c, out_std, moe) for _ in range(c["layers"]))
        self.norm = nn.RMSNorm(c["d_model"], eps=c["norm_eps"])
        self.lm_head = nn.Linear(c["d_model"], c["vocab"], bias=False)
        nn.init.normal_(self.lm_head.weight, std=INIT_STD)

    def forward(self, tokens):
        x = self.embed(tokens)
        c = self.config
        cos, sin = rope_cos_sin(tokens.shape[1], c["d_model"] // c["heads"], c["rope_base"],
                                x.dtype, x.device)
        aux = []
        for layer in self.layers:
            x, a = layer(x, cos, sin)
            if a is not None:
                aux.append(a)
        logits = self.lm_head(self.norm(x))
        aux_loss = torch.stack(aux).mean() if aux else torch.zeros((), device=x.device)
        return logits, aux_loss

    def flops_per_token(self, seq):
        """Counted from the built modules, independently of config.rs: 6 x the active matrix
        parameters but the embedding (routed experts scaled by top-k / experts) plus
        12 x heads x head_dim x seq per layer for attention (PaLM's convention)."""
        c = self.config
        matmul = 0.0
        for name, p in self.named_parameters():
            if p.dim() < 2 or name.startswith("embed."):
                continue
            routed = ".ffn.gate_up" in name or ".ffn.down" in name or ".ffn.expert." in name
            share = 1.0
            if c["experts"] is not None and routed:
                e = c["experts"]
                share = e["active"] / e["count"]
            matmul += p.numel() * share
        return 6.0 * matmul + 12.0 * c["d_model"] * seq * c["layers"]
