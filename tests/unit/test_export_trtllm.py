"""TensorRT-LLM export: names, shapes, dtypes and per-rank shards as documented."""

import json

import pytest
import torch
from safetensors.torch import load_file

from helpers import minitron


@pytest.fixture(scope="module")
def ckpt(tiny_models, tmp_path_factory):
    out = tmp_path_factory.mktemp("trt") / "ck"
    minitron(
        [
            "import",
            "--hf",
            str(tiny_models["llama31-rope"]),
            "--out",
            str(out),
            "--dtype",
            "bfloat16",
        ]
    )
    return out


def export(ckpt, out, tp):
    minitron(
        ["export", "--ckpt", str(ckpt), "--format", "trtllm", "--tp", str(tp), "--out", str(out)]
    )
    return json.loads((out / "config.json").read_text()), [
        load_file(str(out / f"rank{r}.safetensors")) for r in range(tp)
    ]


def test_tp1_names_shapes_dtypes_and_config(ckpt, tiny_models, tmp_path):
    cfg, (w,) = export(ckpt, tmp_path / "t1", 1)
    assert cfg["architecture"] == "LlamaForCausalLM" and cfg["dtype"] == "bfloat16"
    assert cfg["mapping"] == {"world_size": 1, "tp_size": 1, "pp_size": 1}
    assert cfg["quantization"] == {"quant_algo": None, "kv_cache_quant_algo": None}
    assert cfg["head_size"] == 16 and cfg["num_key_value_heads"] == 2
    assert cfg["position_embedding_type"] == "rope_gpt_neox"
    assert cfg["rotary_scaling"]["type"] == "llama3" and cfg["rotary_scaling"]["factor"] == 8.0
    hf = load_file(str(tiny_models["llama31-rope"] / "model.safetensors"))
    h, d = 64, 16
    want = {
        "transformer.vocab_embedding.weight": (300, h),
        "transformer.ln_f.weight": (h,),
        "lm_head.weight": (300, h),
    }
    for i in range(4):
        t = f"transformer.layers.{i}."
        want.update(
            {
                t + "attention.qkv.weight": ((4 + 2 * 2) * d, h),
                t + "attention.dense.weight": (h, 4 * d),
                t + "input_layernorm.weight": (h,),
                t + "post_layernorm.weight": (h,),
                t + "mlp.fc.weight": (128, h),
                t + "mlp.gate.weight": (128, h),
                t + "mlp.proj.weight": (h, 128),
            }
        )
    assert {k: tuple(v.shape) for k, v in w.items()} == want
    assert all(v.dtype == torch.bfloat16 for v in w.values())
    p = "model.layers.2."
    assert torch.equal(
        w["transformer.layers.2.mlp.fc.weight"], hf[p + "mlp.gate_proj.weight"].bfloat16()
    )
    assert torch.equal(
        w["transformer.layers.2.mlp.gate.weight"], hf[p + "mlp.up_proj.weight"].bfloat16()
    )
    qkv = torch.cat([hf[p + f"self_attn.{x}_proj.weight"] for x in "qkv"]).bfloat16()
    assert torch.equal(w["transformer.layers.2.attention.qkv.weight"], qkv)


def test_tp2_shards_concatenate_to_tp1(ckpt, tmp_path):
    _, (full,) = export(ckpt, tmp_path / "t1", 1)
    cfg, ranks = export(ckpt, tmp_path / "t2", 2)
    assert cfg["mapping"] == {"world_size": 2, "tp_size": 2, "pp_size": 1}
    d = 16
    for name, t in full.items():
        a, b = ranks[0][name], ranks[1][name]
        if name.endswith(("layernorm.weight", "ln_f.weight", "vocab_embedding.weight")):
            assert torch.equal(a, t) and torch.equal(b, t), name
        elif name.endswith(("dense.weight", "proj.weight")):
            assert torch.equal(torch.cat([a, b], 1), t), name  # split on the input dim
        elif name.endswith("qkv.weight"):  # each rank: its query heads, then its KV heads
            q, k, v = t.split([4 * d, 2 * d, 2 * d])
            for r, shard in enumerate((a, b)):
                want = torch.cat([q.chunk(2)[r], k.chunk(2)[r], v.chunk(2)[r]])
                assert torch.equal(shard, want), name
        else:
            assert torch.equal(torch.cat([a, b], 0), t), name


def test_tp_above_kv_heads_duplicates_them_as_tensorrt_llm_does(ckpt, tmp_path):
    """4 ranks, 2 KV heads: every rank gets its query head and one KV head, rank r head
    r // 2 (TensorRT-LLM's converter repeats each KV head tp / KV-heads times)."""
    _, (full,) = export(ckpt, tmp_path / "t1", 1)
    cfg, ranks = export(ckpt, tmp_path / "t4", 4)
    assert cfg["mapping"]["tp_size"] == 4 and cfg["num_key_value_heads"] == 2
    d = 16
    for i in range(4):
        name = f"transformer.layers.{i}.attention.qkv.weight"
        q, k, v = full[name].split([4 * d, 2 * d, 2 * d])
        for r, w in enumerate(ranks):
            assert w[name].shape == ((1 + 2) * d, 64)
            assert torch.equal(
                w[name], torch.cat([q.chunk(4)[r], k.chunk(2)[r // 2], v.chunk(2)[r // 2]])
            ), (i, r)


def test_tp_that_fits_neither_heads_nor_kv_heads_is_refused(ckpt, tmp_path):
    import dataclasses

    from minitron.checkpoint.mcore import read_manifest
    from minitron.errors import ConfigError
    from minitron.export.trtllm import check_tp
    from minitron.models.arch import ModelArch

    res = minitron(
        [
            "export",
            "--ckpt",
            str(ckpt),
            "--format",
            "trtllm",
            "--tp",
            "3",
            "--out",
            str(tmp_path / "x"),
        ],
        check=False,
    )
    assert res.returncode == 2 and "tp=3 must divide num_attention_heads=4" in res.stderr
    assert not (tmp_path / "x").exists()
    arch = ModelArch.from_dict(read_manifest(ckpt)["arch"])
    wide = dataclasses.replace(
        arch, num_attention_heads=12, num_query_groups=4, ffn_hidden_size=120
    )
    check_tp(wide, 2), check_tp(wide, 4), check_tp(wide, 12)
    with pytest.raises(ConfigError, match="one must divide the other"):
        check_tp(wide, 6)


@pytest.mark.parametrize("tp", [1, 2])
def test_tied_embeddings_export(tiny_models, tmp_path, tp):
    """SmolLM2 and Llama 3.2 tie the head to the embedding: the head is written as its own
    tensor (safetensors refuses shared memory), equal to the embedding's rows."""
    ck = tmp_path / "ck"
    minitron(["import", "--hf", str(tiny_models["llama-tied"]), "--out", str(ck)])
    cfg, ranks = export(ck, tmp_path / "t", tp)
    assert cfg["tie_word_embeddings"] is True
    emb = ranks[0]["transformer.vocab_embedding.weight"]
    head = torch.cat([w["lm_head.weight"] for w in ranks])
    assert emb.shape == (300, 64) and torch.equal(head[:300], emb)
    assert all(w["lm_head.weight"].shape == (300 // tp, 64) for w in ranks)
