"""`minitron data prepare` -> megatron-core indexed datasets, resumable; seeded samples."""

import json
import os

import numpy as np
import pytest

from minitron.config import loader, schema
from minitron.data.datasets import build, calibration_samples, samples
from minitron.data.prepare import prepare
from minitron.errors import ConfigError, DataError


def cfg(tmp_path, tok, inputs, **kw):
    return loader.load(
        schema.PrepareConfig,
        values={
            "inputs": [str(i) for i in inputs],
            "tokenizer": str(tok),
            "out": str(tmp_path / "out"),
            **kw,
        },
    )


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
    dc = loader.load(
        schema.DataConfig,
        values={"paths": [str(tmp_path / "out")], "seq_length": 16, "split": "80,20,0"},
    )
    a = samples(dc, "valid", 4, 300)
    b = samples(dc, "valid", 4, 300)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert np.array_equal(a["labels"][:, :-1], a["tokens"][:, 1:])
    other = loader.load(
        schema.DataConfig,
        values={"paths": [str(tmp_path / "out")], "seq_length": 16, "split": "80,20,0", "seed": 7},
    )
    assert not np.array_equal(calibration_samples(dc, 8, 300), calibration_samples(other, 8, 300))
    assert calibration_samples(dc, 8, 300).shape == (8, 16)


def test_empty_split_is_a_config_error(tmp_path, tiny_tokenizer, corpus, world):
    prepare(cfg(tmp_path, tiny_tokenizer, [corpus[0]]), log=lambda s: None)
    dc = loader.load(
        schema.DataConfig,
        values={"paths": [str(tmp_path / "out")], "seq_length": 16, "split": "100,0,0"},
    )
    with pytest.raises(ConfigError, match="valid split"):
        build(dc, {"valid": 2}, 300)


def test_blend_of_two_datasets(tmp_path, tiny_tokenizer, corpus, world):
    second = tmp_path / "d.txt"
    second.write_text("\n\n".join(f"Paragraph {i} about apples and pears." for i in range(80)))
    prepare(
        cfg(tmp_path, tiny_tokenizer, [corpus[0], second], text_unit="paragraph"),
        log=lambda s: None,
    )
    dc = loader.load(
        schema.DataConfig,
        values={
            "paths": [str(tmp_path / "out" / "c"), str(tmp_path / "out" / "d")],
            "weights": [0.5, 0.5],
            "seq_length": 16,
            "split": "90,10,0",
        },
    )
    assert samples(dc, "train", 20, 300)["tokens"].shape == (20, 16)


def _files(d, name):
    return [(d / f"{name}{ext}").read_bytes() for ext in (".bin", ".idx")]


def test_workers_write_byte_identical_datasets(tmp_path, tiny_tokenizer, corpus):
    path = tmp_path / "e.jsonl"  # empty documents too: skipped and counted the same way
    path.write_text(corpus[0].read_text() + '{"text": ""}\n{"text": "last one"}\n')
    runs = {}
    for workers in (1, 2):
        c = loader.load(
            schema.PrepareConfig,
            values={
                "inputs": [str(path)],
                "tokenizer": str(tiny_tokenizer),
                "batch_docs": 7,
                "out": str(tmp_path / f"w{workers}"),
                "workers": workers,
            },
        )
        runs[workers] = prepare(c, log=lambda s: None)["datasets"][0]
    assert _files(tmp_path / "w1", "e") == _files(tmp_path / "w2", "e")
    for k in ("documents", "tokens", "empty_documents_skipped", "content"):
        assert runs[1][k] == runs[2][k]
    assert runs[1]["empty_documents_skipped"] == 1 and runs[1]["documents"] == 61


def test_negative_workers_is_a_config_error(tmp_path, tiny_tokenizer, corpus):
    with pytest.raises(ConfigError, match="workers: must be >= 0"):
        cfg(tmp_path, tiny_tokenizer, [corpus[0]], workers=-1)


def test_torchrun_ranks_share_the_inputs(tmp_path, tiny_tokenizer, corpus):
    from helpers import read_json, torchrun

    second = tmp_path / "d.txt"
    second.write_text("\n\n".join(f"Paragraph {i} about apples and pears." for i in range(80)))
    inputs = [str(corpus[0]), str(second)]
    ref = prepare(
        cfg(tmp_path, tiny_tokenizer, inputs, text_unit="paragraph", workers=1), log=lambda s: None
    )
    two = tmp_path / "two"
    res = torchrun(
        2,
        [
            "-m",
            "minitron",
            "data",
            "prepare",
            "--tokenizer",
            str(tiny_tokenizer),
            "--out",
            str(two),
            f"inputs=[{','.join(inputs)}]",
            "text_unit=paragraph",
            "workers=1",
        ],
    )
    logs = res.stdout + res.stderr
    assert logs.count("[prepare] c:") == logs.count("[prepare] d:") == 1  # each by one rank
    index = read_json(two / "datasets.json")
    assert [d["name"] for d in index["datasets"]] == ["c", "d"]
    for name, want in zip(("c", "d"), ref["datasets"]):
        assert _files(two, name) == _files(tmp_path / "out", name)
        got = next(d for d in index["datasets"] if d["name"] == name)
        assert (got["documents"], got["tokens"]) == (want["documents"], want["tokens"])


def test_megatron_lm_prefix_without_sidecar(tmp_path, tiny_tokenizer, tiny_models, corpus, world):
    import shutil

    from helpers import minitron, read_json

    prepare(cfg(tmp_path, tiny_tokenizer, [corpus[0]]), log=lambda s: None)
    mlm = tmp_path / "mlm"
    mlm.mkdir()
    for ext in (".bin", ".idx"):  # what Megatron-LM's tools/preprocess_data.py leaves
        shutil.copy(tmp_path / "out" / f"c{ext}", mlm / f"c_text_document{ext}")
    ours, theirs = str(tmp_path / "out" / "c"), str(mlm / "c_text_document")
    base = {"seq_length": 16, "split": "80,20,0", "cache_dir": str(tmp_path / "cache")}
    a = samples(loader.load(schema.DataConfig, values={"paths": [ours], **base}), "train", 6, 300)
    b = samples(loader.load(schema.DataConfig, values={"paths": [theirs], **base}), "train", 6, 300)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    # blended with a prepared dataset, its default weight is its token count (from the .idx)
    blend = loader.load(schema.DataConfig, values={"paths": [ours, theirs], **base})
    assert samples(blend, "train", 8, 300)["tokens"].shape == (8, 16)
    minitron(
        [
            "loss",
            "--model",
            str(tiny_models["llama-untied"]),
            f"data.paths=[{theirs}]",
            "data.seq_length=16",
            "data.split=80,20,0",
            "num_samples=4",
            "micro_batch_size=2",
            f"out={tmp_path / 'loss.json'}",
        ]
    )
    assert read_json(tmp_path / "loss.json")["tokens"] == 4 * 16


def test_auto_workers_start_a_pool_only_for_inputs_worth_it():
    from minitron.data.prepare import AUTO_BYTES_PER_WORKER, resolve_workers

    cores = len(os.sched_getaffinity(0))
    assert resolve_workers(0, 1, 1000) == 1  # a small file: tokenized in the process
    assert resolve_workers(0, 1, 64 * AUTO_BYTES_PER_WORKER) == cores
    assert resolve_workers(0, 1, None) == cores and resolve_workers(3, 1, 10) == 3
