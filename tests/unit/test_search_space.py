"""Architecture-search enumeration: every candidate is in the budget and meets the
constraints, and none is missed (against a brute-force count over every size)."""

import itertools

import pytest

from minitron.models.arch import load_arch
from minitron.models.params import count_params
from minitron.search.space import Axis, enumerate_candidates, shard

from helpers import ROOT

SMOLLM2 = load_arch(ROOT / "examples" / "smollm2-135m" / "config.json")


def brute_force(teacher, budget, tol, tp, pp, steps, shrink, hf=True):
    """Every integer size of every axis, kept by the stated rules one by one."""

    def allowed(axis):
        cur = getattr(teacher, axis)
        return [
            v
            for v in range(1, cur + 1)
            if v == cur or (v >= cur * (1 - shrink[axis]) and v % steps[axis] == 0)
        ]

    out = set()
    for h, f, a, n in itertools.product(*(allowed(x) for x in steps)):
        if a % teacher.num_query_groups or (hf and h % a) or a % tp:
            continue
        if f % tp or n % pp or teacher.num_query_groups % tp:
            continue
        sizes = {"hidden_size": h, "ffn_hidden_size": f, "num_attention_heads": a, "num_layers": n}
        arch = teacher.replace(**sizes)
        if arch == teacher:
            continue
        p = count_params(arch)["non_embedding"]
        if (1 - tol) * budget <= p <= budget:
            out.add((h, f, a, n))
    return out


@pytest.mark.parametrize("tp,pp", [(1, 1), (3, 1), (1, 2)])
def test_enumeration_equals_brute_force(tp, pp):
    # a small space (coarse steps) so the brute force over every integer stays fast
    teacher = SMOLLM2
    steps = {"hidden_size": 48, "ffn_hidden_size": 256, "num_attention_heads": 1, "num_layers": 2}
    shrink = {
        "hidden_size": 0.4,
        "ffn_hidden_size": 0.5,
        "num_attention_heads": 0.4,
        "num_layers": 0.5,
    }
    axes = {a: Axis(step=steps[a], max_shrink=shrink[a]) for a in steps}
    budget = int(0.5 * count_params(teacher)["non_embedding"])
    got = enumerate_candidates(teacher, axes, budget, tolerance=0.1, tp=tp, pp=pp)
    keys = [tuple(c.sizes.values()) for c in got]
    assert len(keys) == len(set(keys))
    want = brute_force(teacher, budget, 0.1, tp, pp, steps, shrink)
    assert set(keys) == want and len(want) >= 8, (len(keys), len(want))
    for c in got:
        p = count_params(c.arch)["non_embedding"]
        assert p == c.params and 0.9 * budget <= p <= budget
        assert (
            c.arch.num_attention_heads % 3 == 0
            and c.arch.hidden_size % c.arch.num_attention_heads == 0
        )
    assert [c.params for c in got] == sorted((c.params for c in got), reverse=True)


def test_explicit_choices_and_shards_partition():
    axes = {
        "hidden_size": Axis(choices=(576, 432, 384)),
        "ffn_hidden_size": Axis(choices=(1536, 1024, 832, 768)),
        "num_attention_heads": Axis(choices=(9, 6, 4)),  # 4 is not whole KV groups
        "num_layers": Axis(choices=(30, 24, 20, 16, 15)),
    }
    budget = int(0.55 * count_params(SMOLLM2)["non_embedding"])
    got = enumerate_candidates(SMOLLM2, axes, budget, tolerance=0.2)
    assert got and all(c.arch.num_attention_heads in (9, 6) for c in got)
    names = [c.name for c in got]
    parts = [shard(got, i, 3) for i in range(3)]
    assert sorted(c.name for p in parts for c in p) == sorted(names)
    assert all(not set(map(id, a)) & set(map(id, b)) for a, b in itertools.combinations(parts, 2))
    t = got[0].target(SMOLLM2)
    assert t and all(v != getattr(SMOLLM2, k) for k, v in t.items())
