"""Config loading: YAML + flags + key=value, and errors that name the field and the fix."""

import pytest

from minitron import cli
from minitron.config import loader, schema
from minitron.errors import ConfigError


def err(fn, *a, **k) -> ConfigError:
    with pytest.raises(ConfigError) as e:
        fn(*a, **k)
    return e.value


def test_precedence_defaults_yaml_flags_overrides(tmp_path):
    y = tmp_path / "imp.yaml"
    y.write_text("hf: from-yaml\nout: " + str(tmp_path / "o") + "\ntp: 2\ndtype: bfloat16\n")
    cfg = loader.load(schema.ImportConfig, y, ["pp=2"], {"hf": "from-flag"})
    assert (cfg.hf, cfg.tp, cfg.pp, cfg.dtype) == ("from-flag", 2, 2, "bfloat16")
    assert cfg.vocab_pad_multiple == 1024  # default kept


def test_cli_flags_map_to_keys(tmp_path):
    name, cfg = cli.parse(
        ["import", "--hf", "x", "--out", str(tmp_path / "o"), "--tp", "2", "--overwrite", "pp=2"]
    )
    assert name == "import" and (cfg.hf, cfg.tp, cfg.pp, cfg.overwrite) == ("x", 2, 2, True)
    name, cfg = cli.parse(
        [
            "data",
            "prepare",
            "--input",
            "builtin:news",
            "--input",
            "builtin:wiki",
            "--tokenizer",
            "t",
            "--out",
            str(tmp_path),
        ]
    )
    assert name == "data prepare" and cfg.inputs == ["builtin:news", "builtin:wiki"]


def test_unknown_key_lists_valid_keys(tmp_path):
    e = err(loader.load, schema.ImportConfig, None, ["hf=a", f"out={tmp_path}/o", "tpp=2"])
    assert e.field == "tpp" and "valid keys here" in e.message and "tp" in e.message


def test_nested_unknown_key_and_nested_validation():
    e = err(loader.load, schema.LossConfig, None, ["model=m", "data.paths=[x]", "data.seqlen=3"])
    assert e.field == "data.seqlen" and "seq_length" in e.message
    e = err(
        loader.load, schema.LossConfig, None, ["model=m", "data.paths=[x]", "data.seq_length=0"]
    )
    assert e.field == "data.seq_length" and ">= 1" in e.message
    e = err(
        loader.load, schema.LossConfig, None, ["model=m", "data.paths=[a,b]", "data.weights=[1.0]"]
    )
    assert e.field == "data.weights" and "one weight per path" in e.message


def test_wrong_type_names_field(tmp_path):
    e = err(loader.load, schema.ImportConfig, None, ["hf=a", f"out={tmp_path}/o", "tp=two"])
    assert e.field == "tp" and "invalid value" in e.message


def test_required_value_missing():
    e = err(loader.load, schema.ImportConfig, None, ["hf=a"])
    assert e.field == "out" and "required" in e.message


def test_invalid_choice_lists_choices(tmp_path):
    e = err(loader.load, schema.ImportConfig, None, ["hf=a", f"out={tmp_path}/o", "dtype=fp8"])
    assert e.field == "dtype" and "float32, bfloat16, float16" in e.message


def test_existing_output_refused_before_work(tmp_path):
    e = err(loader.load, schema.ImportConfig, None, ["hf=a", f"out={tmp_path}"])
    assert e.field == "out" and "overwrite=true" in e.message


def test_missing_files_named(tmp_path):
    e = err(
        loader.load,
        schema.PrepareConfig,
        None,
        [f"inputs=[{tmp_path}/none.jsonl]", "tokenizer=t", f"out={tmp_path}/o"],
    )
    assert e.field == "inputs[0]" and "does not exist" in e.message
    e = err(
        loader.load,
        schema.PrepareConfig,
        None,
        ["inputs=[builtin:nope]", "tokenizer=t", f"out={tmp_path}/o"],
    )
    assert "builtin:NAME" in e.field and "wiki" in e.message
    e = err(loader.load, schema.ExportConfig, None, [f"ckpt={tmp_path}", f"out={tmp_path}/x"])
    assert e.field == "ckpt" and "manifest.json" in e.message
    e = err(loader.load, schema.ImportConfig, tmp_path / "none.yaml")
    assert e.field == "--config"


def test_bad_override_syntax():
    e = err(cli.parse, ["params", "--hf-config", "x", "hidden_size"])
    assert "key=value" in e.message


@pytest.mark.parametrize("command", sorted(cli.COMMANDS))
def test_every_field_is_documented(command):
    rows = loader.describe(cli.COMMANDS[command].schema)
    assert rows
    for key, _, _, text in rows:
        assert len(text) > 10, f"{command}: {key} has no doc"


def test_run_checks_every_stage_config_before_the_first_stage(tiny_models, tmp_path):
    """A bad value of a later stage (correct.mode) stops `minitron run` before import."""
    from helpers import minitron

    work = tmp_path / "work"
    res = minitron(
        [
            "run",
            "--workdir",
            str(work),
            f"model={tiny_models['llama-untied']}",
            "correct.enabled=true",
            "correct.mode=bogus",
        ],
        check=False,
    )
    assert res.returncode == 2
    assert "correct.mode" in res.stderr and "bogus" in res.stderr
    assert not (work / "checkpoints").exists() and not (work / "data").exists()
