"""TensorRT-LLM export: names, shapes, dtypes and per-rank shards as documented."""

import json

import pytest
import torch
from safetensors.torch import load_file

from helpers import minitron


@pytest.fixture(scope="module")
def ckpt(tiny_models, tmp_path_factory):
    out = tmp_path_factory.mktemp("trt") / "ck"
    minitron(["import", "--hf", str(tiny_models["llama31-rope"]), "--out", str(out),
              "--dtype", "bfloat16"])
    return out


def export(ckpt, out, tp):
    minitron(["export", "--ckpt", str(ckpt), "--format", "trtllm", "--tp", str(tp), "--out", str(out)])
    return json.loads((out / "config.json").read_text()), \
        [load_file(str(out / f"rank{r}.safetensors")) for r in range(tp)]


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
    want = {"transformer.vocab_embedding.weight": (300, h), "transformer.ln_f.weight": (h,),
            "lm_head.weight": (300, h)}
    for i in range(4):
        t = f"transformer.layers.{i}."
        want.update({t + "attention.qkv.weight": ((4 + 2 * 2) * d, h),
                     t + "attention.dense.weight": (h, 4 * d), t + "input_layernorm.weight": (h,),
                     t + "post_layernorm.weight": (h,), t + "mlp.fc.weight": (128, h),
                     t + "mlp.gate.weight": (128, h), t + "mlp.proj.weight": (h, 128)})
    assert {k: tuple(v.shape) for k, v in w.items()} == want
    assert all(v.dtype == torch.bfloat16 for v in w.values())
    p = "model.layers.2."
    assert torch.equal(w["transformer.layers.2.mlp.fc.weight"], hf[p + "mlp.gate_proj.weight"].bfloat16())
    assert torch.equal(w["transformer.layers.2.mlp.gate.weight"], hf[p + "mlp.up_proj.weight"].bfloat16())
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


def test_tp_must_divide_kv_heads(ckpt, tmp_path):
    res = minitron(["export", "--ckpt", str(ckpt), "--format", "trtllm", "--tp", "4", "--out",
                    str(tmp_path / "x")], check=False)
    assert res.returncode == 2 and "tp=4 must divide num_query_groups=2" in res.stderr
    assert not (tmp_path / "x").exists()
