"""Bench figures over rounds: rotation, medians, spread, unstable marks; and the report's
recovered fraction of the pruning gap."""

import pytest

from minitron.bench import summary
from minitron.pipeline.report import recovered_fraction


def test_round_order_rotates_so_no_model_is_always_first():
    models = ["teacher", "width", "depth"]
    orders = [summary.round_order(models, r) for r in range(3)]
    assert orders == [
        ["teacher", "width", "depth"],
        ["width", "depth", "teacher"],
        ["depth", "teacher", "width"],
    ]
    assert {o[0] for o in orders} == set(models)


def _round(prefill, decode, peak=100.0):
    return {
        "results": {
            "1": {
                "prefill_tokens_per_s": prefill,
                "decode_tokens_per_s": decode,
                "ms_per_decoded_token": 1000 / decode,
            }
        },
        "peak_memory_mb": peak,
        "parameters": 7,
    }


def test_a_figure_whose_rounds_disagree_by_over_20_percent_is_unstable():
    steady = summary.aggregate([_round(100, 10), _round(104, 10.5), _round(98, 9.9)])
    noisy = summary.aggregate(
        [_round(100, 10), _round(100, 1.1), _round(101, 10)],
    )
    assert steady["results"]["1"]["unstable"] == []
    assert steady["results"]["1"]["prefill_tokens_per_s"] == 100  # the median
    assert noisy["results"]["1"]["unstable"] == ["decode"]
    assert noisy["results"]["1"]["spread"]["decode"] == pytest.approx((10 - 1.1) / 10)
    assert noisy["peak_memory_mb"] == 100.0 and noisy["rounds"] == 3
    results = {"teacher": {"transformers": steady}, "width": {"transformers": noisy}}
    rows = {r["model"]: r for r in summary.speedups(results, "teacher")}
    assert rows["width"]["decode_unstable"] and not rows["width"]["prefill_unstable"]
    assert not rows["teacher"]["decode_unstable"]
    assert summary.mark(0.11, True) == "0.11 (unstable)" and summary.mark(1.5, False) == "1.50"


def test_recovered_fraction_of_the_pruning_gap():
    assert recovered_fraction(8.20, 5.36, 3.94) == pytest.approx((8.20 - 5.36) / (8.20 - 3.94))
    assert recovered_fraction(8.0, 4.0, 4.0) == 1.0
    assert recovered_fraction(8.0, 8.5, 4.0) < 0
