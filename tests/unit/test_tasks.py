"""Task formats, loaders, few-shot prompts and the malformed-file errors."""

import json

import pytest

from minitron.errors import DataError
from minitron.eval.multiple_choice import aggregate
from minitron.eval.tasks import (
    MCItem,
    fewshot_prefixes,
    load_items,
    subset,
    winogrande_from_bigbench,
    winogrande_item,
)

from helpers import ROOT

SHARED = ROOT.parent / "shared" / "data" / "winogrande_bigbench.jsonl"
FIXTURE = ROOT / "tests" / "fixtures" / "winogrande_bigbench_sample.jsonl"


def test_winogrande_partial_scoring_texts():
    item = winogrande_item(
        {
            "sentence": "The trophy did not fit in the suitcase because the _ was too big.",
            "option1": "trophy",
            "option2": "suitcase",
            "answer": "1",
        },
        "x",
    )
    assert item.contexts == (
        "The trophy did not fit in the suitcase because the trophy",
        "The trophy did not fit in the suitcase because the suitcase",
    )
    assert item.continuations == (" was too big.",) * 2 and item.gold == 0


def write(tmp_path, rows, name="t.jsonl"):
    p = tmp_path / name
    p.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return p


GOOD_W = {"sentence": "A _ b.", "option1": "x", "option2": "y", "answer": "2"}
GOOD_G = {"context": "Q?", "choices": ["a", "bb", "c"], "gold": 1}


@pytest.mark.parametrize(
    "rows,line,text",
    [
        ([GOOD_W, {"sentence": "A _ b.", "option1": "x", "answer": "1"}], 2, "no 'option2' field"),
        ([GOOD_W, {**GOOD_W, "answer": "3"}], 2, "answer '3' is out of range"),
        ([GOOD_W, GOOD_W, {**GOOD_W, "sentence": "no blank"}], 3, "exactly one '_'"),
        ([GOOD_G, {**GOOD_G, "gold": 3}], 2, "gold 3 is out of range for 3 choices"),
        ([GOOD_G, {"context": "Q?", "gold": 0}], 2, "no 'choices' field"),
        ([GOOD_G, "{not json"], 2, "invalid JSON"),
        ([{"question": "?"}], 1, "cannot tell the format"),
    ],
)
def test_malformed_task_files_name_the_line(tmp_path, rows, line, text):
    p = write(tmp_path, rows)
    with pytest.raises(DataError) as e:
        load_items(str(p))
    assert f"t.jsonl:{line}:" in str(e.value) and text in str(e.value)


def test_generic_items_and_acc_norm():
    items = load_items(str(write_tmp([GOOD_G])))
    assert items[0].continuations == (" a", " bb", " c") and items[0].choice_texts == (
        "a",
        "bb",
        "c",
    )
    # raw argmax picks choice 0 (-2.0); per character, choice 1 wins (-3.0 / 2 = -1.5)
    res = aggregate(items, [[-2.0, -3.0, -4.0]])
    assert res["acc"] == 0.0 and res["acc_norm"] == 1.0 and res["predictions"] == [0]


def write_tmp(rows):
    import tempfile
    from pathlib import Path

    d = Path(tempfile.mkdtemp())
    return write(d, rows)


def test_builtin_winogrande_is_the_bigbench_parse():
    """Against an independent parse of BIG-bench's task: 61 of its rows (every 150th and the
    last, with their positions) live in tests/fixtures, so the check runs on every checkout;
    the whole file is compared too where ../shared holds it."""
    items = load_items("builtin:winogrande")
    assert len(items) == 8998
    sample = [json.loads(line) for line in FIXTURE.read_text().splitlines()]
    assert len(sample) == 61 and sample[-1]["index"] == 8997
    for r in sample:
        assert winogrande_item(r, "ref") == items[r["index"]], r["index"]
    if SHARED.is_file():
        ref = [json.loads(line) for line in SHARED.read_text().splitlines()]
        assert [winogrande_item(r, "ref") for r in ref] == items


def test_bigbench_parser_on_a_pair():
    task = {
        "examples": [
            {
                "input": "Context Word: rats.",
                "target": [
                    "Sentence 1: The rats fled the holes as the _ were crowded. \nAnswer1: holes. \n"
                    "Sentence 2: The rats fled the holes as the _ were roomy. \nAnswer2: spaces."
                ],
            },
            {
                "input": "w",
                "target": [
                    "Sentence 1: A _ x. \nAnswer1: GPS. \nSentence 2: B _ y. \nAnswer2: GPS."
                ],
            },  # equal answers: unscorable, dropped
        ]
    }
    rows = winogrande_from_bigbench(task)
    assert rows == [
        {
            "sentence": "The rats fled the holes as the _ were crowded.",
            "option1": "holes",
            "option2": "spaces",
            "answer": "1",
        },
        {
            "sentence": "The rats fled the holes as the _ were roomy.",
            "option1": "holes",
            "option2": "spaces",
            "answer": "2",
        },
    ]


def test_subset_and_fewshot_are_seeded_and_exclude_the_item():
    items = [MCItem((f"c{i}",), (f" x{i}",), 0, ("x",)) for i in range(50)]
    a, b = subset(items, 10, 1), subset(items, 10, 1)
    assert a == b and len(a) == 10 and a != subset(items, 10, 2)
    p1 = fewshot_prefixes(items, items, 3, seed=5, same_pool=True)
    assert p1 == fewshot_prefixes(items, items, 3, seed=5, same_pool=True)
    for item, prefix in zip(items, p1):
        shots = prefix.split("\n\n")[:-1]
        assert len(shots) == 3 and item.render(0) not in shots and prefix.endswith("\n\n")
    assert fewshot_prefixes(items, items, 0, 5, True) == [""] * 50


def test_hub_source_uses_datasets(monkeypatch):
    import datasets

    seen = {}

    def fake(name, config, split):
        seen.update(name=name, config=config, split=split)
        return [{"sentence": "A _ b.", "option1": "x", "option2": "y", "answer": "1"}]

    monkeypatch.setattr(datasets, "load_dataset", fake)
    items = load_items("hf:allenai/winogrande:winogrande_xl:validation")
    assert seen == {"name": "allenai/winogrande", "config": "winogrande_xl", "split": "validation"}
    assert items[0].contexts == ("A x", "A y")


def test_hub_source_offline_is_a_clear_error(monkeypatch):
    import datasets

    from minitron.errors import ConfigError

    def offline(*a, **k):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(ConfigError, match="builtin:winogrande"):
        load_items("hf:allenai/winogrande:winogrande_xl:validation")


def test_bigbench_sdist_source(tmp_path):
    import io
    import tarfile

    from minitron.eval.tasks import BIGBENCH_TASK

    task = {
        "examples": [
            {
                "input": "w",
                "target": [
                    "Sentence 1: One _ here. \nAnswer1: cat. \nSentence 2: Two _ there. \nAnswer2: dog."
                ],
            }
        ]
    }
    raw = json.dumps(task).encode()
    tar = tmp_path / "bigbench-1.0.0.tar.gz"
    with tarfile.open(tar, "w:gz") as tf:
        info = tarfile.TarInfo(f"bigbench-1.0.0/{BIGBENCH_TASK}")
        info.size = len(raw)
        tf.addfile(info, io.BytesIO(raw))
    items = load_items(f"bigbench:{tar}")
    assert [it.gold for it in items] == [0, 1] and items[1].contexts == ("Two cat", "Two dog")
