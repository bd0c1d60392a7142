"""Reading HF configs into ModelArch, writing them back, and layout checks."""

import copy
import json

import pytest

from minitron.errors import ConfigError
from minitron.models.arch import ModelArch, arch_from_hf_config, hf_config_for, read_hf_config
from minitron.models.builder import check_layout

from helpers import ROOT

LLAMA = read_hf_config(ROOT / "examples/llama-3.1-8b/config.json")
NEMO = read_hf_config(ROOT / "examples/mistral-nemo-12b/config.json")


def test_llama31_config():
    a = arch_from_hf_config(LLAMA)
    assert (a.hidden_size, a.ffn_hidden_size, a.num_layers) == (4096, 14336, 32)
    assert (a.num_attention_heads, a.num_query_groups, a.head_dim) == (32, 8, 128)
    assert a.rope_theta == 500000.0 and a.rope_scaling["factor"] == 8.0
    assert a.rope_scaling["original_max_position_embeddings"] == 8192
    assert a.padded_vocab_size == 129024 and a.padded_vocab_size % 8 == 0
    assert not a.tie_word_embeddings


def test_mistral_nemo_head_dim_is_decoupled():
    a = arch_from_hf_config(NEMO)
    assert a.hidden_size // a.num_attention_heads == 160 and a.head_dim == 128


def test_transformers5_rope_parameters_equal_v4_rope_scaling():
    v5 = copy.deepcopy(LLAMA)
    scaling = v5.pop("rope_scaling")
    v5["rope_parameters"] = {**scaling, "rope_theta": v5.pop("rope_theta")}
    assert arch_from_hf_config(v5) == arch_from_hf_config(LLAMA)


@pytest.mark.parametrize(
    "change,field",
    [
        ({"model_type": "gpt2"}, "model_type"),
        ({"attention_bias": True}, "attention_bias"),
        ({"hidden_act": "gelu"}, "hidden_act"),
        ({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}, "rope_scaling"),
        ({"num_key_value_heads": 5}, "num_query_groups"),
    ],
)
def test_unsupported_configs_are_named(change, field):
    cfg = {**LLAMA, **change}
    with pytest.raises(ConfigError) as e:
        arch_from_hf_config(cfg)
    assert e.value.field == field


def test_hf_config_round_trip_keeps_explicit_head_dim():
    a = arch_from_hf_config(NEMO).replace(hidden_size=4096, ffn_hidden_size=11520)
    cfg = hf_config_for(a, NEMO)
    assert cfg["head_dim"] == 128 and cfg["hidden_size"] == 4096
    assert arch_from_hf_config(json.loads(json.dumps(cfg))) == a


def test_replace_rejects_unknown_field():
    with pytest.raises(ConfigError) as e:
        arch_from_hf_config(LLAMA).replace(hiden_size=1)
    assert e.value.field == "hiden_size"


@pytest.mark.parametrize(
    "tp,pp,field,text",
    [
        (3, 1, "tp", "valid tp: [1, 2, 4, 8]"),
        (16, 1, "tp", "num_query_groups=8"),
        (1, 3, "pp", "num_layers=32"),
        (0, 1, "tp", ">= 1"),
    ],
)
def test_layout_checks(tp, pp, field, text):
    with pytest.raises(ConfigError) as e:
        check_layout(arch_from_hf_config(LLAMA), tp, pp)
    assert e.value.field == field and text in e.value.message


def test_arch_dict_round_trip():
    a = arch_from_hf_config(LLAMA)
    assert ModelArch.from_dict(json.loads(json.dumps(a.to_dict()))) == a
