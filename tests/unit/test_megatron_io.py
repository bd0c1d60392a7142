"""Megatron-LM, Megatron-Bridge and NeMo 2 checkpoints: read (hand-made fixtures in their
documented layouts), written (``export --format megatron``), refused when minitron cannot
represent them, and read only through the pickle gate."""

import argparse
import json
import shutil

import pytest
import torch

from minitron.checkpoint import gate, megatron
from minitron.checkpoint.load import describe_source, load_model
from minitron.config import loader, schema
from minitron.errors import CheckpointError, ConfigError
from minitron.eval.logits import full_logits
from minitron.models.weights import full_tensors
from minitron.recipes import export, import_hf

import megatron_fixtures as fx
from helpers import make_tiny_model, make_tiny_tokenizer

TOKENS = torch.randint(0, 300, (2, 24), generator=torch.Generator().manual_seed(3))
QUIET = dict(log=lambda s: None)


@pytest.fixture(scope="module")
def hf(tmp_path_factory):
    """{variant: tiny HF directory with the tiny tokenizer}."""
    root = tmp_path_factory.mktemp("mhf")
    tok = make_tiny_tokenizer(root / "tok")
    out = {}
    for v in ("llama-untied", "llama-tied", "llama31-mcore", "llama31-rope", "mistral-headdim"):
        d = make_tiny_model(root / v, v)
        for f in tok.iterdir():
            shutil.copy2(f, d / f.name)
        out[v] = d
    return out


def source_logits(hf_dir):
    """Logits of the megatron-core model the fixture wrote (its own padding)."""
    model, arch = fx._model(hf_dir, 384)
    return full_logits(model, TOKENS, arch.vocab_size)


def imported(src, out, **values):
    import_hf.main(
        loader.load(schema.ImportConfig, values={"megatron": str(src), "out": str(out), **values}),
        **QUIET,
    )
    return out


def assert_same_logits(ckpt_or_src, hf_dir, tol=1e-5):
    model, arch, _ = load_model(str(ckpt_or_src))
    diff = (full_logits(model, TOKENS, arch.vocab_size) - source_logits(hf_dir)).abs().max()
    assert diff.item() <= tol, (ckpt_or_src, diff.item())
    return arch


@pytest.mark.parametrize("variant", ["llama-untied", "llama-tied", "llama31-mcore"])
def test_megatron_lm_checkpoint_imports_with_the_source_logits(variant, hf, tmp_path, world):
    src = fx.megatron_lm(hf[variant], tmp_path / "mlm")
    s = megatron.open_source(src)
    assert (s.kind, s.weights.name, s.prefix) == ("megatron-lm", "iter_0000007", "")
    ck = imported(src, tmp_path / "ck")
    arch = assert_same_logits(ck, hf[variant])
    assert arch.num_query_groups == 2 and arch.vocab_size == 300
    assert arch.tie_word_embeddings == (variant != "llama-untied")
    if variant == "llama31-mcore":
        assert arch.rope_scaling["factor"] == 32.0
    assert_same_logits(src, hf[variant])  # any stage takes the directory itself
    # the bare iteration directory works too
    imported(src / "iter_0000007", tmp_path / "ck2")
    a, b = (full_tensors(load_model(str(p))[0]) for p in (ck, tmp_path / "ck2"))
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("variant", ["llama-tied", "mistral-headdim"])
def test_bridge_checkpoint_imports_from_run_config(variant, hf, tmp_path, world):
    src = fx.bridge(hf[variant], tmp_path / "bridge")
    s = megatron.open_source(src)
    assert s.kind == "megatron-bridge" and s.tokenizer == s.weights / "tokenizer"
    arch = assert_same_logits(imported(src, tmp_path / "ck"), hf[variant])
    assert arch.head_dim == (32 if variant == "mistral-headdim" else 16)


@pytest.mark.parametrize("variant", ["llama-untied", "llama31-rope"])
def test_nemo2_checkpoint_imports_and_its_lightning_state_is_never_unpickled(
    variant, hf, tmp_path, world
):
    marker = tmp_path / "pwned"
    src = fx.nemo2(hf[variant], tmp_path / "nemo", marker=marker)
    s = megatron.open_source(src)
    assert (s.kind, s.prefix) == ("nemo2", "module.")
    assert s.tokenizer == src / "context" / "nemo_tokenizer"
    arch = assert_same_logits(imported(src, tmp_path / "ck"), hf[variant])
    if variant == "llama31-rope":  # NeMo's own scaling fields, any original context
        assert arch.rope_scaling["original_max_position_embeddings"] == 32
    assert not marker.exists()


@pytest.mark.parametrize("variant", ["llama-untied", "llama-tied", "llama31-mcore"])
def test_export_megatron_round_trip_is_bit_exact(variant, hf, tmp_path, world):
    import_hf.main(
        loader.load(
            schema.ImportConfig, values={"hf": str(hf[variant]), "out": str(tmp_path / "ck")}
        ),
        **QUIET,
    )
    export.main(
        loader.load(
            schema.ExportConfig,
            values={
                "ckpt": str(tmp_path / "ck"),
                "format": "megatron",
                "out": str(tmp_path / "meg"),
            },
        ),
        **QUIET,
    )
    meg = tmp_path / "meg"
    assert (meg / "latest_checkpointed_iteration.txt").read_text() == "release"
    common = gate.read_common(meg / "release")
    args = common["args"]
    assert isinstance(args, argparse.Namespace) and common["iteration"] == 0
    assert common["checkpoint_version"] == 3.0
    assert (args.swiglu, args.normalization, args.add_bias_linear) == (True, "RMSNorm", False)
    assert args.untie_embeddings_and_output_weights == (variant == "llama-untied")
    assert args.padded_vocab_size == 384 and args.use_rope_scaling == (variant == "llama31-mcore")
    assert sorted(megatron.stored_keys(meg / "release"))[0].startswith("decoder.")
    want = full_tensors(load_model(str(tmp_path / "ck"))[0])
    for kind in ("megatron-bridge", "megatron-lm"):
        if kind == "megatron-lm":  # without run_config.yaml: the architecture from args
            (meg / "release" / "run_config.yaml").unlink()
        assert megatron.open_source(meg).kind == kind
        back = imported(meg, tmp_path / f"back-{kind}")
        got = full_tensors(load_model(str(back))[0])
        assert sorted(got) == sorted(want) and all(torch.equal(got[k], want[k]) for k in want)


def test_export_megatron_refuses_rope_scaling_megatron_core_cannot_run(hf, tmp_path, world):
    import_hf.main(
        loader.load(
            schema.ImportConfig, values={"hf": str(hf["llama31-rope"]), "out": str(tmp_path / "ck")}
        ),
        **QUIET,
    )
    with pytest.raises(ConfigError) as e:
        export.main(
            loader.load(
                schema.ExportConfig,
                values={
                    "ckpt": str(tmp_path / "ck"),
                    "format": "megatron",
                    "out": str(tmp_path / "m"),
                },
            ),
            **QUIET,
        )
    assert e.value.field == "rope_scaling" and not (tmp_path / "m").exists()


@pytest.mark.parametrize(
    "change,field",
    [
        ({"num_experts": 8}, "num_experts"),
        ({"normalization": "LayerNorm"}, "normalization"),
        ({"add_bias_linear": True}, "add_bias_linear"),
        ({"swiglu": False}, "swiglu"),
        ({"rotary_percent": 0.5}, "rotary_percent"),
        ({"position_embedding_type": "learned_absolute"}, "position_embedding_type"),
        ({"untie_embeddings_and_output_weights": True}, "untie_embeddings_and_output_weights"),
    ],
)
def test_what_minitron_cannot_represent_is_refused_naming_the_field(
    change, field, hf, tmp_path, world
):
    src = fx.megatron_lm(hf["llama-tied"], tmp_path / "mlm", extra_args=change)
    with pytest.raises(ConfigError) as e:
        imported(src, tmp_path / "ck")
    assert e.value.field == field, e.value
    assert not (tmp_path / "ck").exists()


def test_bridge_config_refusals_name_the_provider_field(hf, tmp_path, world):
    src = fx.bridge(hf["llama-tied"], tmp_path / "b")
    rc = src / "iter_0000005" / "run_config.yaml"
    rc.write_text(rc.read_text().replace("gated_linear_unit: true", "gated_linear_unit: false"))
    with pytest.raises(ConfigError) as e:
        megatron.describe(megatron.open_source(src))
    assert e.value.field == "gated_linear_unit" and "run_config.yaml" in str(e.value)


def test_a_missing_tokenizer_names_the_field_and_tokenizer_override_works(hf, tmp_path, world):
    src = fx.megatron_lm(hf["llama-tied"], tmp_path / "mlm", with_tokenizer_path=False)
    with pytest.raises(ConfigError) as e:
        imported(src, tmp_path / "ck")
    assert e.value.field == "tokenizer" and "tokenizer=DIR" in str(e.value)
    with pytest.raises(ConfigError) as e:  # every stage: same message
        describe_source(str(src))
    assert e.value.field == "tokenizer"
    ck = imported(src, tmp_path / "ck", tokenizer=str(hf["llama-tied"]))
    assert (ck / "tokenizer" / "tokenizer.json").is_file()
    assert_same_logits(ck, hf["llama-tied"])


def test_malicious_args_are_refused_before_anything_runs(hf, tmp_path, world):
    """``args`` is read through the same restricted unpickler as every checkpoint pickle."""
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {marker}",))

    src = fx.megatron_lm(hf["llama-tied"], tmp_path / "mlm", extra_args={"note": Payload()})
    with pytest.raises(CheckpointError) as e:
        imported(src, tmp_path / "ck")
    assert "os.system" in str(e.value) or "posix.system" in str(e.value)
    assert "common.pt" in str(e.value)
    with pytest.raises(CheckpointError):
        load_model(str(src))
    assert not marker.exists() and not (tmp_path / "ck").exists()


def test_megatron_common_state_reads_as_inert_records(hf, tmp_path, world):
    src = fx.megatron_lm(hf["llama-tied"], tmp_path / "mlm")
    common = gate.read_common(src / "iter_0000007")
    backend = common["args"].attention_backend
    assert isinstance(backend, gate.Record) and backend.args == (5,)
    assert common["args"].params_dtype is torch.float32
    assert common["content_metadata"]["chained_optim_avoid_prefix"] is True
    # without the Megatron allowances the same file is refused (argparse is not a tensor)
    with pytest.raises(CheckpointError, match="argparse.Namespace"):
        gate.check_dist_checkpoint(src / "iter_0000007")


def test_codecs_other_than_latin1_are_refused():
    import pickle

    data = pickle.dumps(b"\x00\xff", protocol=2)
    assert gate.check_pickle(data, "x", megatron=True) == b"\x00\xff"
    evil = data.replace(b"latin1", b"rot_13")
    with pytest.raises(CheckpointError, match="codec"):
        gate.check_pickle(evil, "x", megatron=True)


def test_layouts_that_are_not_read_say_why(tmp_path):
    legacy = tmp_path / "legacy"
    (legacy / "iter_0000002" / "mp_rank_00").mkdir(parents=True)
    (legacy / "iter_0000002" / "mp_rank_00" / "model_optim_rng.pt").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="torch_dist"):
        megatron.open_source(legacy)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "latest_checkpointed_iteration.txt").write_text("12")
    with pytest.raises(CheckpointError, match="iter_0000012"):
        megatron.open_source(bad)
    with pytest.raises(ConfigError) as e:
        loader.load(schema.ImportConfig, values={"megatron": str(tmp_path), "out": "x"})
    assert e.value.field == "megatron"
    with pytest.raises(ConfigError) as e:
        loader.load(schema.ImportConfig, values={"out": "x"})
    assert e.value.field == "hf"


def test_import_cli_reads_a_megatron_directory(hf, tmp_path, world):
    from helpers import minitron

    src = fx.bridge(hf["llama-tied"], tmp_path / "bridge")
    r = minitron(["import", "--megatron", str(src), "--out", str(tmp_path / "ck")])
    assert "megatron-bridge" in r.stdout + r.stderr
    manifest = json.loads((tmp_path / "ck" / "manifest.json").read_text())
    assert manifest["extra"]["source_kind"] == "megatron-bridge"
    assert_same_logits(tmp_path / "ck", hf["llama-tied"])


def test_every_stage_takes_a_megatron_directory_as_its_model(hf, calib, tmp_path, world):
    """``minitron loss --model NEMO_DIR`` (in memory, at TP=2 under torchrun) scores exactly
    as the HF model; ``minitron run`` imports it into the experiment directory."""
    from helpers import minitron, read_json, torchrun

    src = fx.nemo2(hf["llama-untied"], tmp_path / "nemo")
    common = [f"data.paths=[{calib}]", "data.seq_length=32", "num_samples=4", "data.split=90,10,0"]
    minitron(["loss", "--model", str(hf["llama-untied"]), *common, f"out={tmp_path}/a.json"])
    torchrun(
        2,
        [
            "-m",
            "minitron",
            "loss",
            "--model",
            str(src),
            "--tp",
            "2",
            *common,
            f"out={tmp_path}/b.json",
        ],
    )
    a, b = read_json(tmp_path / "a.json"), read_json(tmp_path / "b.json")
    assert a["tokens"] == b["tokens"] and abs(a["loss"] - b["loss"]) < 1e-5, (a, b)
    work = tmp_path / "work"
    (tmp_path / "run.yaml").write_text(
        f"model: {src}\nworkdir: {work}\nstages: [import]\n"
        "students: [{name: s, target: {num_layers: 2}}]\n"
    )
    minitron(["run", "--config", str(tmp_path / "run.yaml")])
    manifest = read_json(work / "checkpoints" / "teacher" / "manifest.json")
    assert manifest["extra"]["source_kind"] == "nemo2"
    assert_same_logits(work / "checkpoints" / "teacher", hf["llama-untied"])


def test_run_tokenizer_is_only_for_megatron_models(hf):
    from minitron.config.run import RunConfig

    with pytest.raises(ConfigError) as e:
        loader.load(
            RunConfig,
            values={"model": str(hf["llama-tied"]), "tokenizer": "x", "workdir": "w"},
        )
    assert e.value.field == "tokenizer"


def test_export_loads_the_way_megatron_lm_and_bridge_load_it(hf, tmp_path, world):
    """What Megatron-LM core_v0.16.1 does with ``--finetune --use-checkpoint-args``, done
    with megatron-core alone: the tracker, ``common.pt`` through ``torch.load`` with
    megatron-core's safe globals (weights_only), ``args`` copied, the model's sharded state
    dict (built from those args, Megatron-LM's own vocab padding) loaded with its default
    strictness; Bridge's reader: ``run_config.yaml`` with ``yaml.safe_load``."""
    import yaml
    from megatron.core import dist_checkpointing

    from minitron.models.builder import build_model
    from minitron.models.megatron_arch import arch_from_args

    import_hf.main(
        loader.load(
            schema.ImportConfig, values={"hf": str(hf["llama-untied"]), "out": str(tmp_path / "ck")}
        ),
        **QUIET,
    )
    export.main(
        loader.load(
            schema.ExportConfig,
            values={
                "ckpt": str(tmp_path / "ck"),
                "format": "megatron",
                "out": str(tmp_path / "meg"),
            },
        ),
        **QUIET,
    )
    meg = tmp_path / "meg"
    it = meg / (meg / "latest_checkpointed_iteration.txt").read_text().strip()
    common = dist_checkpointing.load_common_state_dict(str(it))  # torch.load, weights_only
    args = common["args"]
    assert common["iteration"] == 0 and args.ckpt_format == "torch_dist"
    assert args.tokenizer_type == "HuggingFaceTokenizer"
    assert (it / "tokenizer" / "tokenizer.json").is_file()
    arch = arch_from_args(vars(args), 300)
    model = build_model(arch.replace(padded_vocab_size=args.padded_vocab_size), init_weights=False)
    metadata = dist_checkpointing.load_content_metadata(preloaded_state_dict=common) or {}
    state = dist_checkpointing.load(
        {"model": model.sharded_state_dict(metadata=metadata)},
        str(it),
        strict="assume_ok_unexpected",
    )
    model.load_state_dict(state["model"], strict=False)
    diff = (full_logits(model, TOKENS, 300) - source_logits(hf["llama-untied"])).abs().max()
    assert diff.item() <= 1e-5
    run_config = yaml.safe_load((it / "run_config.yaml").read_text())
    m = run_config["model"]
    assert (m["tensor_model_parallel_size"], m["pipeline_model_parallel_size"]) == (1, 1)
    assert m["_target_"] == "megatron.bridge.models.gpt_provider.GPTModelProvider"
    assert (m["num_layers"], m["num_query_groups"], m["share_embeddings_and_output_weights"]) == (
        4,
        2,
        False,
    )
