"""The memory plan against a measurement on CPU: SmolLM2 distillation at DP=1 and at DP=2
with the distributed optimizer, the plan within 20% of each rank's measured peak growth
(benchmarks/memory_vs_plan.py: resident memory from start-up to the training peak)."""

import sys

import pytest

from helpers import ROOT, minitron

pytestmark = [pytest.mark.slow, pytest.mark.distributed]


def test_plan_within_20_percent_of_measured_peak(smollm2_dir, tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from memory_vs_plan import measure

    teacher, student, data = tmp_path / "teacher", tmp_path / "student", tmp_path / "data"
    minitron(["import", "--hf", str(smollm2_dir), "--out", str(teacher)])
    minitron(
        [
            "prune",
            "--model",
            str(teacher),
            "--out",
            str(student),
            "width_method=magnitude",
            "target.hidden_size=384",
            "target.ffn_hidden_size=1024",
            "target.num_attention_heads=6",
        ]
    )
    minitron(
        [
            "data",
            "prepare",
            "--tokenizer",
            str(smollm2_dir),
            "--out",
            str(data),
            "inputs=[builtin:news]",
            "eod_token=<|endoftext|>",
        ]
    )
    for dp in (1, 2):
        r = measure(teacher, student, data, tmp_path, steps=2, dp=dp)
        assert len(r["ranks"]) == dp
        for rank in r["ranks"]:
            assert 0.8 <= rank["ratio_measured_over_plan"] <= 1.2, r
