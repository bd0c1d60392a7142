"""The real `minitron` command on CPU: files written, errors and exit codes."""

import json

import pytest

from helpers import minitron, read_json


def test_usage_and_unknown_command():
    res = minitron(["nope"], check=False)
    assert res.returncode != 0 and "unknown command 'nope'" in res.stderr


def test_help_config_lists_documented_keys():
    res = minitron(["import", "--help-config"], check=False)
    assert "vocab_pad_multiple (int, default 1024)" in res.stdout + res.stderr


def test_bad_config_fails_before_work_with_exit_2(tmp_path):
    res = minitron(
        ["import", "--hf", "smollm2-135m", "--out", str(tmp_path / "o"), "tp=3"], check=False
    )
    assert res.returncode == 2
    assert "tp: tp=3 x pp=1 needs 3 processes" in res.stderr and "torchrun" in res.stderr
    assert not (tmp_path / "o").exists()


def test_import_tp_not_dividing_groups(tiny_models, tmp_path):
    res = minitron(
        ["import", "--hf", str(tiny_models["llama-untied"]), "--out", str(tmp_path / "o"), "tp=4"],
        check=False,
    )
    # 1 process cannot hold tp=4: the process-count check comes first, naming tp
    assert res.returncode == 2 and res.stderr.startswith("error: tp:")


def test_prepare_then_loss(tiny_models, tiny_tokenizer, tmp_path):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text(
        "\n".join(
            json.dumps({"text": f"Story {i}: the fox ran past {i} trees."}) for i in range(200)
        )
    )
    minitron(
        [
            "data",
            "prepare",
            "--input",
            str(corpus),
            "--tokenizer",
            str(tiny_tokenizer),
            "--out",
            str(tmp_path / "data"),
        ]
    )
    idx = read_json(tmp_path / "data" / "datasets.json")
    assert idx["datasets"][0]["documents"] == 200
    out = tmp_path / "loss.json"
    minitron(
        [
            "loss",
            "--model",
            str(tiny_models["llama-untied"]),
            f"data.paths=[{tmp_path}/data]",
            "data.seq_length=32",
            "num_samples=4",
            "data.split=90,10,0",
            f"out={out}",
        ]
    )
    result = read_json(out)
    assert result["tokens"] == 4 * 32 and 4.0 < result["loss"] < 8.0  # random 300-way model


def test_bad_data_file_exit_2_names_line(tiny_tokenizer, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"text": "ok"}\n{"text": "\xff"}\n')
    res = minitron(
        [
            "data",
            "prepare",
            "--input",
            str(bad),
            "--tokenizer",
            str(tiny_tokenizer),
            "--out",
            str(tmp_path / "d"),
        ],
        check=False,
    )
    assert res.returncode == 2 and "bad.jsonl:2:" in res.stderr and "not UTF-8" in res.stderr


@pytest.mark.slow
def test_demo_end_to_end(smollm2_dir, tmp_path):
    res = minitron(
        ["demo", f"workdir={tmp_path}", "num_samples=2", "seq_length=64", "corpora=[builtin:news]"]
    )
    summary = read_json(tmp_path / "results.json")
    assert 2.0 < summary["held_out"]["news"]["loss"] < 6.0
    assert "news" in res.stdout
    again = minitron(
        ["demo", f"workdir={tmp_path}", "num_samples=2", "seq_length=64", "corpora=[builtin:news]"]
    )
    assert "reusing" in again.stdout and "skipped" in again.stdout
