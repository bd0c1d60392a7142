"""`minitron params` reproduces the paper's Table 3 exactly as printed."""

import json

import pytest

from minitron import cli

from helpers import ROOT

LLAMA = str(ROOT / "examples/llama-3.1-8b/config.json")
NEMO = str(ROOT / "examples/mistral-nemo-12b/config.json")


def printed(args):
    out = []
    cli.run(["params", *args], log=out.append)
    return "\n".join(out)


@pytest.mark.parametrize(
    "cfg,overrides,total,nonemb,total_h,nonemb_h",
    [
        # Table 3: Llama-3.1-Minitron-4B-Width, 4B-Depth, MN-Minitron-8B
        (
            LLAMA,
            ["hidden_size=3072", "ffn_hidden_size=9216"],
            4_512_746_496,
            3_724_741_632,
            "4.5B",
            "3.7B",
        ),
        (LLAMA, ["num_layers=16"], 4_540_469_248, 3_489_796_096, "4.5B", "3.5B"),
        (
            NEMO,
            ["hidden_size=4096", "ffn_hidden_size=11520"],
            8_414_105_600,
            7_340_363_776,
            "8.4B",
            "7.3B",
        ),
        # the teachers themselves
        (LLAMA, [], 8_030_261_248, 6_979_588_096, "8.0B", "7.0B"),
    ],
)
def test_table3(cfg, overrides, total, nonemb, total_h, nonemb_h):
    text = printed(["--hf-config", cfg, *overrides])
    lines = text.splitlines()
    assert lines[1] == f"{'total parameters':<30}{total:>16,}  ({total_h})"
    assert lines[2] == f"{'non-embedding parameters':<30}{nonemb:>16,}  ({nonemb_h})"
    data = json.loads(printed(["--hf-config", cfg, "--json", *overrides]))
    assert (data["total"], data["non_embedding"]) == (total, nonemb)


def test_tied_embeddings_counted_once(tiny_models):
    data = json.loads(printed(["--hf-config", str(tiny_models["llama-tied"]), "--json"]))
    assert data["output"] == 0 and data["total"] == data["non_embedding"] + data["embedding"]


def test_counts_equal_built_model_numel(tiny_models, world):
    from minitron.models.arch import load_arch
    from minitron.models.builder import build_model
    from minitron.models.params import count_params

    for variant in ("llama-untied", "llama-tied", "mistral-headdim"):
        arch = load_arch(tiny_models[variant])
        model = build_model(arch, init_weights=False)
        pad = arch.padded_vocab_size - arch.vocab_size
        numel = sum(p.numel() for p in model.parameters())
        rows = 1 if arch.tie_word_embeddings else 2
        assert numel - rows * pad * arch.hidden_size == count_params(arch)["total"], variant


@pytest.mark.parametrize(
    "example,total,nonemb",
    [
        ("llama-3.1-8b/prune_width.yaml", "4,512,746,496", "3,724,741,632"),
        ("llama-3.1-8b/prune_depth.yaml", "4,540,469,248", "3,489,796,096"),
        ("mistral-nemo-12b/prune_width.yaml", "8,414,105,600", "7,340,363,776"),
    ],
)
def test_paper_prune_configs_dry_run_print_table3(example, total, nonemb):
    text = printed_cmd(["prune", "--config", str(ROOT / "examples" / example), "--dry-run"])
    assert f"{total} total" in text and f"{nonemb} non-embedding" in text


def printed_cmd(args):
    out = []
    cli.run(args, log=out.append)
    return "\n".join(out)
