"""CPU checks of the benchmark's PyTorch model (`python3 test_model.py`): the two MoE forms compute
the same function, the models are causal, parameter and FLOP counts are those of
stages/src/model/config.rs for the same presets, and bench.py itself runs every eager variant to
the end (so the GPU run, whose device time is scarce, does not find a broken script)."""

import contextlib
import io
import json
import sys

import torch

import model as m


def small(experts):
    return dict(vocab=64, layers=2, d_model=32, heads=4, kv_heads=2, ffn=48, experts=experts,
                rope_base=10_000.0, norm_eps=1e-5)


def test_grouped_and_loop_moe_agree():
    m.PRESETS["small-moe"] = small(dict(count=4, active=2, segments=2))
    torch.manual_seed(0)
    grouped = m.Transformer("small-moe", moe="grouped")
    loop = m.Transformer("small-moe", moe="loop")
    state = {k: v for k, v in grouped.state_dict().items() if ".ffn." not in k or "router" in k}
    loop.load_state_dict(state, strict=False)
    for g, l in zip(grouped.layers, loop.layers):
        for e, expert in enumerate(l.ffn.expert):
            expert.gate_up.data.copy_(g.ffn.gate_up.data[e])
            expert.down.data.copy_(g.ffn.down.data[e])
    tokens = torch.randint(64, (3, 10))
    (a, aux_a), (b, aux_b) = grouped(tokens), loop(tokens)
    assert torch.allclose(a, b, atol=1e-5), (a - b).abs().max()
    assert torch.allclose(aux_a, aux_b, atol=1e-6)
    assert 0.5 < aux_a.item() < 8


def test_causal():
    m.PRESETS["small"] = small(None)
    torch.manual_seed(1)
    model = m.Transformer("small").double()
    a = torch.randint(64, (2, 12))
    b = a.clone()
    b[:, 8:] = torch.randint(64, (2, 4))
    la, lb = model(a)[0], model(b)[0]
    assert torch.allclose(la[:, :8], lb[:, :8], atol=1e-10)
    assert not torch.allclose(la[:, 8:], lb[:, 8:], atol=1e-4)


def test_counts_match_config_rs():
    dense = m.Transformer("dense-125m", moe="grouped")
    n = sum(p.numel() for p in dense.parameters())
    # config.rs: dense_preset_has_about_110m_non_embedding_parameters, param_count.
    non_embedding = n - 2 * 32768 * 768
    assert 105_000_000 < non_embedding < 115_000_000, non_embedding
    # config.rs: train_flops_count_attention_by_context.
    matmul = 6.0 * (non_embedding + 32768 * 768 - 25 * 768)
    assert abs(dense.flops_per_token(1024) - matmul - 12 * 12 * 768 * 1024) < 1.0
    moe = m.Transformer("moe-125m", moe="loop")
    router = 12 * 768 * 32
    assert abs(moe.flops_per_token(1024) - dense.flops_per_token(1024) - 6 * router) < 1.0


def test_bench_script_runs_and_trains():
    import bench
    m.PRESETS["small"] = small(None)
    m.PRESETS["small-moe"] = small(dict(count=4, active=2, segments=2))
    for preset, variant in [("small", "eager"), ("small-moe", "loop"), ("small-moe", "grouped")]:
        sys.argv = ["bench.py", preset, variant, "--device", "cpu", "--seq", "12", "--batch", "4",
                    "--steps", "4", "--warmup", "1", "--lr", "1e-2"]
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            bench.main()
        report = json.loads(out.getvalue().strip().splitlines()[-1])
        assert report["variant"] == variant and report["dtype"] == "f32", report
        assert report["params"] == sum(
            p.numel() for p in m.Transformer(preset, moe="grouped").parameters()), report
        assert report["tokens_per_s"] > 0 and report["loss_last"] < report["loss_first"], report

if __name__ == "__main__":
    for name, test in list(globals().items()):
        if name.startswith("test_"):
            test()
            print("ok", name)
