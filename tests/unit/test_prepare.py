"""`minitron data prepare` -> megatron-core indexed datasets, resumable; seeded samples."""

import json

import numpy as np
import pytest

from minitron.config import loader, schema
from minitron.data.datasets import build, calibration_samples, samples
from minitron.data.prepare import prepare
from minitron.errors import ConfigError, DataError


def cfg(tmp_path, tok, inputs, **kw):
    return loader.load(schema.PrepareConfig, values={
        "inputs": [str(i) for i in inputs], "tokenizer": str(tok), "out": str(tmp_path / "out"),
        **kw})


@pytest.fixture
def corpus(tmp_path):
    docs = [f"Document {i}: " + " ".join(f"word{j % 7}" for j in range(30 + i)) for i in range(60)]
    p = tmp_path / "c.jsonl"
    p.write_text("\n".join(json.dumps({"text": d}) for d in docs) + "\n")
    return p, docs


def test_tokens_match_tokenizer_and_eod(tmp_path, tiny_tokenizer, corpus):
    from megatron.core.datasets.indexed_dataset import IndexedDataset
    from transformers import AutoTokenizer

    path, docs = corpus
    index = prepare(cfg(tmp_path, tiny_tokenizer, [path]), log=lambda s: None)
    tok = AutoTokenizer.from_pretrained(tiny_tokenizer)
    ds = IndexedDataset(str(tmp_path / "out" / "c"))
    assert len(ds) == len(docs) == index["datasets"][0]["documents"]
    for i in (0, 17, 59):
        want = tok(docs[i], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        assert np.array_equal(ds[i], want)
    assert index["datasets"][0]["tokens"] == sum(len(ds[i]) for i in range(len(ds)))


def test_rerun_skips_prepared_datasets(tmp_path, tiny_tokenizer, corpus):
    c = cfg(tmp_path, tiny_tokenizer, [corpus[0]])
    prepare(c, log=lambda s: None)
    mtime = (tmp_path / "out" / "c.bin").stat().st_mtime_ns
    logs = []
    prepare(c, log=logs.append)
    assert "skipped" in logs[0] and (tmp_path / "out" / "c.bin").stat().st_mtime_ns == mtime


def test_bad_file_fails_before_anything_is_written(tmp_path, tiny_tokenizer, corpus):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"txt": "oops"}\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2: no 'text' field"):
        prepare(cfg(tmp_path, tiny_tokenizer, [corpus[0], bad]), log=lambda s: None)
    assert not (tmp_path / "out" / "c.bin").exists()


def test_samples_are_seeded_and_layout_free(tmp_path, tiny_tokenizer, corpus, world):
    prepare(cfg(tmp_path, tiny_tokenizer, [corpus[0]]), log=lambda s: None)
    dc = loader.load(schema.DataConfig, values={"paths": [str(tmp_path / "out")],
                                                 "seq_length": 16, "split": "80,20,0"})
    a = samples(dc, "valid", 4, 300)
    b = samples(dc, "valid", 4, 300)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert np.array_equal(a["labels"][:, :-1], a["tokens"][:, 1:])
    other = loader.load(schema.DataConfig, values={"paths": [str(tmp_path / "out")],
                                                    "seq_length": 16, "split": "80,20,0",
                                                    "seed": 7})
    assert not np.array_equal(calibration_samples(dc, 8, 300), calibration_samples(other, 8, 300))
    assert calibration_samples(dc, 8, 300).shape == (8, 16)


def test_empty_split_is_a_config_error(tmp_path, tiny_tokenizer, corpus, world):
    prepare(cfg(tmp_path, tiny_tokenizer, [corpus[0]]), log=lambda s: None)
    dc = loader.load(schema.DataConfig, values={"paths": [str(tmp_path / "out")],
                                                 "seq_length": 16, "split": "100,0,0"})
    with pytest.raises(ConfigError, match="valid split"):
        build(dc, {"valid": 2}, 300)


def test_blend_of_two_datasets(tmp_path, tiny_tokenizer, corpus, world):
    second = tmp_path / "d.txt"
    second.write_text("\n\n".join(f"Paragraph {i} about apples and pears." for i in range(80)))
    prepare(cfg(tmp_path, tiny_tokenizer, [corpus[0], second], text_unit="paragraph"),
            log=lambda s: None)
    dc = loader.load(schema.DataConfig, values={
        "paths": [str(tmp_path / "out" / "c"), str(tmp_path / "out" / "d")],
        "weights": [0.5, 0.5], "seq_length": 16, "split": "90,10,0"})
    assert samples(dc, "train", 20, 300)["tokens"].shape == (20, 16)
