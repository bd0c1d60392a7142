"""Checkpoints: atomic writes, manifest checks, clear errors, exact HF round trip (TP=1)."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from minitron.checkpoint import atomic
from minitron.checkpoint.mcore import load_checkpoint, read_manifest
from minitron.config import loader, schema
from minitron.errors import CheckpointError
from minitron.recipes import export, import_hf


@pytest.fixture(scope="module")
def ckpt(tiny_models, tmp_path_factory, world):
    out = tmp_path_factory.mktemp("ck") / "untied"
    cfg = loader.load(
        schema.ImportConfig, values={"hf": str(tiny_models["llama-untied"]), "out": str(out)}
    )
    import_hf.main(cfg, log=lambda s: None)
    return out


def copy(ckpt, tmp_path):
    dst = tmp_path / "c"
    shutil.copytree(ckpt, dst)
    return dst


def test_manifest_records_config_layout_and_checksums(ckpt):
    m = read_manifest(ckpt)
    assert m["arch"]["hidden_size"] == 64 and m["saved_layout"]["tp"] == 1
    assert m["dtype"] == "float32"
    weights = [k for k in m["files"] if k.startswith("weights/")]
    assert weights and all(len(m["files"][k]["sha256"]) == 64 for k in weights)
    assert not atomic.leftovers(ckpt)


@pytest.mark.parametrize(
    "variant", ["llama-untied", "llama-tied", "mistral-headdim", "llama31-rope"]
)
def test_hf_round_trip_is_exact(variant, tiny_models, tmp_path, world):
    ck, hf = tmp_path / "ck", tmp_path / "hf"
    import_hf.main(
        loader.load(schema.ImportConfig, values={"hf": str(tiny_models[variant]), "out": str(ck)}),
        log=lambda s: None,
    )
    export.main(
        loader.load(schema.ExportConfig, values={"ckpt": str(ck), "out": str(hf)}),
        log=lambda s: None,
    )
    a = load_file(str(tiny_models[variant] / "model.safetensors"))
    b = load_file(str(hf / "model.safetensors"))
    assert sorted(a) == sorted(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    src = json.loads((tiny_models[variant] / "config.json").read_text())
    out = json.loads((hf / "config.json").read_text())
    for key in ("hidden_size", "num_key_value_heads", "tie_word_embeddings", "vocab_size"):
        assert src[key] == out[key]


def test_truncated_file_is_reported(ckpt, tmp_path, world):
    c = copy(ckpt, tmp_path)
    f = sorted((c / "weights").glob("*.distcp"))[0]
    f.write_bytes(f.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(c)


def test_flipped_byte_is_reported(ckpt, tmp_path, world):
    c = copy(ckpt, tmp_path)
    f = sorted((c / "weights").glob("*.distcp"))[0]
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        load_checkpoint(c)
    load_checkpoint(c, verify="size")  # the size check alone cannot see it: full is the default


def test_missing_manifest_or_file(ckpt, tmp_path, world):
    c = copy(ckpt, tmp_path)
    (c / "manifest.json").unlink()
    with pytest.raises(CheckpointError, match="no manifest.json"):
        load_checkpoint(c)
    c2 = tmp_path / "c2"
    shutil.copytree(ckpt, c2)
    (c2 / "weights" / "metadata.json").unlink()
    with pytest.raises(CheckpointError, match="metadata.json is missing"):
        load_checkpoint(c2)


def test_manifest_that_does_not_match_the_weights(ckpt, tmp_path, world):
    c = copy(ckpt, tmp_path)
    m = json.loads((c / "manifest.json").read_text())
    m["arch"]["ffn_hidden_size"] = 96
    (c / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(CheckpointError, match="do not fit this model"):
        load_checkpoint(c)


def test_existing_output_is_not_replaced_without_overwrite(ckpt, tmp_path, world):
    from minitron.checkpoint.mcore import save_checkpoint

    model, _ = load_checkpoint(ckpt)
    with pytest.raises(CheckpointError, match="already exists"):
        save_checkpoint(
            model, ckpt, arch=model.minitron_arch, hf_config={}, tokenizer_src=None, dtype="float32"
        )


def test_failed_save_leaves_no_checkpoint(ckpt, tmp_path, world, monkeypatch):
    from minitron.checkpoint import mcore

    model, _ = load_checkpoint(ckpt)
    monkeypatch.setattr(mcore.atomic, "checksums", lambda root: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        mcore.save_checkpoint(
            model,
            tmp_path / "new",
            arch=model.minitron_arch,
            hf_config={},
            tokenizer_src=None,
            dtype="float32",
        )
    assert not (tmp_path / "new").exists()


def test_bfloat16_checkpoint(tiny_models, tmp_path, world):
    ck = tmp_path / "bf16"
    import_hf.main(
        loader.load(
            schema.ImportConfig,
            values={"hf": str(tiny_models["llama-untied"]), "out": str(ck), "dtype": "bfloat16"},
        ),
        log=lambda s: None,
    )
    model, m = load_checkpoint(ck)
    assert m["dtype"] == "bfloat16"
    assert next(model.parameters()).dtype == torch.bfloat16


def test_truncated_hf_safetensors_is_reported(tiny_models, tmp_path):
    from minitron.checkpoint.hf_io import HFReader

    src = tiny_models["llama-untied"]
    dst = tmp_path / "hf"
    shutil.copytree(src, dst)
    f = dst / "model.safetensors"
    f.write_bytes(f.read_bytes()[:-1000])
    with pytest.raises(CheckpointError, match="truncated"):
        HFReader(dst)
    (dst / "model.safetensors").unlink()
    (dst / "pytorch_model.bin").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="convert them to safetensors"):
        HFReader(dst)
