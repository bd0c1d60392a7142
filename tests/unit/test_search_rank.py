"""Search ranking: ranks with ties and Spearman's correlation against scipy's."""

import math
import random

import pytest

from minitron.search.rank import ranks, spearman, top_k


def test_ranks_average_ties():
    assert ranks([3.0, 1.0, 2.0]) == [3.0, 1.0, 2.0]
    assert ranks([1.0, 2.0, 2.0, 0.5]) == [2.0, 3.5, 3.5, 1.0]


@pytest.mark.filterwarnings("ignore::scipy.stats.ConstantInputWarning")
def test_spearman_equals_scipy():
    stats = pytest.importorskip("scipy.stats")
    rng = random.Random(0)
    for n in (2, 3, 8, 25):
        for _ in range(20):
            a = [rng.choice([1.0, 2.0, 3.0, rng.random()]) for _ in range(n)]
            b = [rng.choice([1.0, 2.0, rng.random()]) for _ in range(n)]
            want = stats.spearmanr(a, b).statistic
            got = spearman(a, b)
            assert (math.isnan(got) and math.isnan(want)) or abs(got - want) < 1e-12, (a, b)


def test_spearman_extremes_and_errors():
    assert spearman([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))
    with pytest.raises(ValueError):
        spearman([1, 2], [1])


def test_top_k_is_stable():
    scores = {"b": 1.0, "a": 1.0, "c": 0.5}
    assert top_k(scores, 2) == ["c", "a"]
    assert top_k(scores, None) == ["c", "a", "b"]
