"""The memory planner's arithmetic: bytes per parameter, the divisions by dp and tp, recompute,
the pipeline's micro-batches in flight, check() and published figures (Korthikanti et al. 2022,
Megatron-LM, ZeRO)."""

from pathlib import Path

import pytest

from minitron.errors import ConfigError
from minitron.models.arch import ModelArch, load_arch
from minitron.models.params import count_params
from minitron.train.memory import (
    ModelRole,
    Precision,
    check,
    layer_activation_bytes,
    plan,
    stage_params,
)

ROOT = Path(__file__).resolve().parents[2]
STATE = ("weights", "gradients", "fp32 main params", "optimizer (Adam moments)")


def arch(**kw) -> ModelArch:
    base = dict(
        family="llama",
        hidden_size=256,
        ffn_hidden_size=768,
        num_layers=8,
        num_attention_heads=8,
        num_query_groups=4,
        head_dim=32,
        vocab_size=1000,
        padded_vocab_size=1024,
        max_position_embeddings=4096,
        rope_theta=1e4,
    )
    return ModelArch(**{**base, **kw})


def state_bytes(p, name="m") -> int:
    return sum(p.parts.get(f"{name} {k}", 0) for k in STATE)


def one(a=None, **kw):
    return plan([("m", ModelRole(a or arch()))], **kw)


def layer(a: ModelArch, s: int, **kw) -> float:
    return layer_activation_bytes(
        a.hidden_size,
        a.ffn_hidden_size,
        a.num_attention_heads,
        a.num_query_groups,
        a.head_dim,
        s,
        1,
        **kw,
    )


def test_stage_params_sum_to_the_model():
    a = arch()
    c = count_params(a)
    pad = (a.padded_vocab_size - a.vocab_size) * a.hidden_size * 2  # embedding + output rows
    assert stage_params(a, 1, 1, "only") == c["total"] + pad
    assert stage_params(a, 1, 2, "first") + stage_params(a, 1, 2, "last") == c["total"] + pad
    # tp splits the matrices, not the RMSNorm weights
    norms = (2 * a.num_layers + 1) * a.hidden_size
    assert stage_params(a, 4, 1, "only") == (c["total"] + pad - norms) // 4 + norms
    # tied embeddings: one copy at pp = 1, a second one on the last stage at pp = 2
    t = arch(tie_word_embeddings=True)
    vh = t.padded_vocab_size * t.hidden_size
    assert stage_params(t, 1, 1, "only") == stage_params(a, 1, 1, "only") - vh
    assert stage_params(t, 1, 2, "last") == stage_params(a, 1, 2, "last")


@pytest.mark.parametrize(
    "dtype,grad_fp32,per_param",
    [
        ("bfloat16", True, 18),  # 2 weights + 4 fp32 grads + 4 main params + 8 Adam
        ("bfloat16", False, 16),  # ZeRO's 16 Psi: 2 + 2 + 4 + 8
        ("float32", True, 16),  # 4 + 4 + no main copy (params are stepped in place) + 8
        ("float32", False, 16),  # fp32 params always reduce fp32 grads
    ],
)
def test_bytes_per_parameter_at_dp1(dtype, grad_fp32, per_param):
    p = one(precision=Precision(dtype, grad_reduce_in_fp32=grad_fp32), seq_length=64)
    assert state_bytes(p) == per_param * p.params_per_gpu["m"]
    assert ("m fp32 main params" in p.parts) == (dtype != "float32")


@pytest.mark.parametrize("dp", [1, 8, 32])
def test_distributed_optimizer_divides_the_fp32_share_by_dp(dp):
    """Megatron-LM's theoretical_memory_usage.py: 18, or 6 + 12 / dp bytes per parameter."""
    p = one(dp=dp, precision=Precision("bfloat16", use_distributed_optimizer=True), seq_length=64)
    n = p.params_per_gpu["m"]
    assert state_bytes(p) == pytest.approx((6 + 12 / dp) * n, abs=2)
    plain = one(dp=dp, precision=Precision("bfloat16"), seq_length=64)
    assert state_bytes(plain) == 18 * n


def test_bf16_grads_are_copied_to_fp32_at_the_step_only():
    """16-bit grads: the optimizer's fp32 copy exists after backward freed the activations,
    so it is the peak only when it outweighs them."""
    prec = Precision("bfloat16", grad_reduce_in_fp32=False)
    long = one(precision=prec, seq_length=4096)
    assert "m fp32 main grads" not in long.parts and "m activations" in long.parts
    short = one(precision=prec, seq_length=8)
    assert short.parts["m fp32 main grads"] == 4 * short.params_per_gpu["m"]
    assert "m activations" not in short.parts


def test_sequence_parallel_divides_activations_by_tp():
    kw = dict(seq_length=2048, micro_batch_size=2)
    base = one(tp=1, **kw).parts["m activations"]
    tp4 = one(tp=4, **kw).parts["m activations"]
    sp4 = one(tp=4, sequence_parallel=True, **kw).parts["m activations"]
    assert sp4 == pytest.approx(base / 4, rel=1e-9)
    assert base / 4 < tp4 < base  # without SP the norm inputs/outputs stay whole on every rank
    assert one(tp=1, sequence_parallel=True, **kw).parts["m activations"] == base  # no-op


@pytest.mark.parametrize("flash", [False, True])
def test_recompute_full_below_selective_below_none(flash):
    a = arch(num_layers=32)
    act = {
        rc: one(a, seq_length=1024, recompute=rc, flash_attention=flash).parts["m activations"]
        for rc in ("none", "selective", "full")
    }
    assert act["full"] < act["selective"]
    if flash:  # flash keeps no attention scores: selective (core_attn) has nothing to drop
        assert act["selective"] == act["none"]
    else:
        assert act["selective"] < act["none"]


def test_full_recompute_keeps_one_input_per_group():
    a, s = arch(), 1024
    per_layer = layer(a, s)
    residual = 2 * s * 256
    for n_layers in (1, 2, 4):
        p = one(a, seq_length=s, recompute="full", recompute_num_layers=n_layers)
        groups = a.num_layers // n_layers
        expected = groups * residual + n_layers * per_layer + 2 * residual  # + output inputs
        assert p.parts["m activations"] == round(expected)


@pytest.mark.parametrize("m,in_flight,stage", [(16, 4, "first"), (2, 2, "first"), (1, 1, "last")])
def test_pipeline_stages_hold_their_micro_batches_in_flight(m, in_flight, stage):
    """1F1B: the first stage holds min(pp, m) micro-batches, the last one (plus the output
    layer's inputs, the logits and the loss); the plan is the larger of the two."""
    a, s = arch(), 512
    p = one(a, pp=4, seq_length=s, global_batch_size=m)
    assert p.stage == stage and p.total_bytes >= max(p.other_stage_bytes.values())
    two = a.num_layers // 4
    if stage == "first":
        assert p.parts["m activations"] == round(in_flight * two * layer(a, s))
        assert "loss buffers" not in p.parts
    else:
        assert p.parts["m activations"] == round(two * layer(a, s) + 2 * 2 * s * a.hidden_size)
        assert p.parts["loss buffers"] == s * a.padded_vocab_size * (2 + 4)


def test_pipeline_picks_the_larger_stage():
    p = one(pp=4, seq_length=2048, global_batch_size=16)
    assert p.stage == "first"  # 4 micro-batches in flight outweigh the output layer and loss
    assert p.total_bytes >= p.other_stage_bytes["last"]


def test_korthikanti_table2_exactly():
    """GPT terms (4h MLP, MHA, dropout, no flash) reproduce Table 2 of Korthikanti et al. 2022
    for GPT-3 175B (h 12288, a 96, s 2048, t 8); its score term 5as/h is 80."""
    h, a, s, t = 12288, 96, 2048, 8
    sbh = s * h

    def gpt(**kw):
        return (
            layer_activation_bytes(
                h, 4 * h, a, a, h // a, s, 1, gated=False, dropout=True, flash=False, **kw
            )
            / sbh
        )

    assert 5 * a * s / h == 80
    assert gpt() == 34 + 80
    assert gpt(tp=t) == 10 + 24 / t + 80 / t
    assert gpt(tp=t, sequence_parallel=True) == 34 / t + 80 / t
    assert gpt(tp=t, selective=True) == 10 + 24 / t
    assert gpt(tp=t, sequence_parallel=True, selective=True) == 34 / t
    assert gpt(act_bytes=4) == 2 * 32 + 2 + 80 * 4 / 5 * 2 + 80 / 5  # fp32: floats double


def test_llama_layer_formula():
    """Llama (SwiGLU, GQA, no dropout, flash): n (8h + (4d(q + g) + 6f) / t)."""
    h, f, q, g, d, s, t = 4096, 14336, 32, 8, 128, 8192, 8
    got = layer_activation_bytes(h, f, q, g, d, s, 1, tp=t)
    assert got == s * (8 * h + (4 * d * (q + g) + 6 * f) / t)


def test_zero_gpt2_figure():
    """ZeRO (Rajbhandari et al. 2020, sec. 3.1): mixed-precision Adam needs 16 bytes per
    parameter, 'at least 24 GB' for the 1.5B-parameter GPT-2."""
    p = one(precision=Precision("bfloat16", grad_reduce_in_fp32=False), seq_length=64)
    assert state_bytes(p) / p.params_per_gpu["m"] * 1.5e9 == 24e9


def test_kd_loss_buffers_shrink_with_the_chunk():
    s, t = arch(hidden_size=192, ffn_hidden_size=512), arch()
    models = [("student", ModelRole(s)), ("teacher", ModelRole(t, trained=False))]
    full = plan(models, seq_length=2048, loss_kind="kd").parts["loss buffers"]
    chunked = plan(models, seq_length=2048, loss_kind="kd", loss_chunk_tokens=256)
    v, n = 1024, 2048
    assert full == 3 * n * v * 2 + 4 * n * v * 4  # two logits + gradient (bf16), fp32 chunks
    assert chunked.parts["loss buffers"] == 3 * n * v * 2 + 4 * 256 * v * 4
    assert "teacher gradients" not in chunked.parts and "teacher weights" in chunked.parts


def test_flops_and_step_time():
    a, s, gbs = arch(), 1024, 64
    c = count_params(a)
    n_mm = c["non_embedding"] + a.padded_vocab_size * a.hidden_size
    attn = 4 * a.num_layers * a.num_attention_heads * a.head_dim * s
    p = one(a, seq_length=s, global_batch_size=gbs, flops_per_second=1e12)
    assert p.flops_per_step == gbs * s * (6 * n_mm + 3 * attn)
    assert p.step_time_s == pytest.approx(p.flops_per_step / 1e12)
    full = one(a, seq_length=s, global_batch_size=gbs, recompute="full")
    assert full.flops_per_step == gbs * s * (8 * n_mm + 4 * attn)
    kd = plan(
        [("s", ModelRole(a)), ("t", ModelRole(a, trained=False))],
        seq_length=s,
        global_batch_size=gbs,
        loss_kind="kd",
    )
    assert kd.flops_per_step == gbs * s * (8 * n_mm + 4 * attn)
    piped = one(a, pp=2, seq_length=s, global_batch_size=gbs, flops_per_second=1e12)
    assert piped.step_time_s == pytest.approx(p.step_time_s * (1 + 1 / gbs))


def test_check_names_the_largest_part_and_the_fix():
    acts = one(seq_length=32768, micro_batch_size=4)
    assert acts.largest()[0] == "m activations"
    with pytest.raises(ConfigError) as e:
        check(acts, gpu_memory_gb=acts.total_bytes / 2e9)
    assert e.value.field == "gpu_memory_gb"
    assert "'m activations'" in e.value.message and "sequence_parallel" in e.value.message
    opt = one(seq_length=16)
    assert opt.largest()[0] == "m optimizer (Adam moments)"
    with pytest.raises(ConfigError, match="use_distributed_optimizer"):
        check(opt, gpu_memory_gb=opt.total_bytes / 2e9)
    check(opt, gpu_memory_gb=opt.total_bytes / 1e9)  # exactly at the budget: fits
    assert "DOES NOT FIT" in opt.format(gpu_memory_gb=opt.total_bytes / 2e9)


@pytest.mark.parametrize(
    "kw,field",
    [
        (dict(tp=3), "tp"),
        (dict(pp=3), "pp"),
        (dict(recompute="some"), "recompute"),
        (dict(loss_kind="kl"), "loss_kind"),
        (dict(dp=2, global_batch_size=3), "global_batch_size"),
        (dict(precision=None, micro_batch_size=0), "micro_batch_size"),
    ],
)
def test_bad_settings_name_the_field(kw, field):
    with pytest.raises(ConfigError) as e:
        one(**kw)
    assert e.value.field == field
    with pytest.raises(ConfigError):
        Precision("int8")
    with pytest.raises(ConfigError):
        plan([("t", ModelRole(arch(), trained=False))])


def test_paper_teacher_correction_fits_80gb():
    """Llama-3.1-8B teacher correction at the paper's layout (tp 8, dp 32, bf16, seq 8192)."""
    t = load_arch(ROOT / "examples/llama-3.1-8b")
    p = plan(
        [("teacher", ModelRole(t))],
        tp=8,
        dp=32,
        seq_length=8192,
        global_batch_size=1152,
        precision=Precision("bfloat16", use_distributed_optimizer=True),
    )
    assert p.params_per_gpu["teacher"] == stage_params(t, 8, 1, "only")
    assert 10e9 < p.total_bytes < 80e9
    assert p.layout["num_microbatches"] == 36
    check(p, gpu_memory_gb=80)
