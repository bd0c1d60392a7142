"""`minitron bench` on two tiny models: JSON and chart written; missing backends handled."""

import pytest

from helpers import minitron, read_json


def models(tiny_models):
    return (
        "models=[{name: big, path: " + str(tiny_models["llama-untied"]) + "}, "
        "{name: small, path: " + str(tiny_models["llama-tied"]) + "}]"
    )


def test_bench_writes_json_and_chart(tiny_models, tmp_path):
    res = minitron(
        [
            "bench",
            "--out",
            str(tmp_path),
            models(tiny_models),
            "batch_sizes=[1,2]",
            "prompt_length=16",
            "decode_tokens=4",
            "repeats=1",
            "threads=1",
        ]
    )
    report = read_json(tmp_path / "bench.json")
    assert report["baseline"] == "big" and report["device"] == "cpu"
    assert {(s["model"], s["batch"]) for s in report["speedups"]} == {
        ("big", 1),
        ("big", 2),
        ("small", 1),
        ("small", 2),
    }
    for s in report["speedups"]:
        if s["model"] == "big":
            assert s["prefill"] == pytest.approx(1.0) and s["decode"] == pytest.approx(1.0)
    r = report["results"]["small"]["transformers"]
    assert r["results"]["2"]["decode_tokens_per_s"] > 0 and r["peak_memory_mb"] > 0
    assert (tmp_path / "bench.png").stat().st_size > 1000
    assert "small" in res.stdout


def test_missing_backend_fails_only_when_asked_for(tiny_models, tmp_path):
    from minitron.choices import bench_backend_available as available

    if available("vllm"):
        pytest.skip("vllm is installed here")
    res = minitron(
        [
            "bench",
            "--out",
            str(tmp_path / "a"),
            models(tiny_models),
            "backends=[transformers,vllm]",
        ],
        check=False,
    )
    assert res.returncode == 2 and "vllm was asked for but is not installed" in res.stderr
    assert not (tmp_path / "a" / "bench.json").exists()
    res = minitron(
        [
            "bench",
            "--out",
            str(tmp_path / "b"),
            models(tiny_models),
            "backends=[auto]",
            "batch_sizes=[1]",
            "prompt_length=8",
            "decode_tokens=2",
            "repeats=1",
        ]
    )
    assert "skipping vllm: not installed" in res.stdout
    assert set(read_json(tmp_path / "b" / "bench.json")["results"]["big"]) == {"transformers"}
