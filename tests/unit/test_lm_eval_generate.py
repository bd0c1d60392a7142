"""lm-eval generation through minitron: ``generate_until`` equals ``minitron generate`` on the
same requests; the chat-template interface renders as ``minitron align`` does; the built-in
IFEval-format set is valid for lm-eval's own checkers and runs through them offline."""

import json
from pathlib import Path

import pytest

from helpers import minitron, read_json

pytest.importorskip("lm_eval")

PROMPTS = [
    "The fox",
    "Yesterday the market",
    "A new report says that the city",
    "Rain",
    "Scientists have found",
    "The minister said",
]


class Req:  # the part of lm-eval's Instance the model reads
    def __init__(self, *args):
        self.args = args


@pytest.fixture(scope="module")
def tiny_lm(world, tiny_models):
    from transformers import AutoTokenizer

    from minitron.checkpoint.load import load_model
    from minitron.eval.lm_eval_adapter import MinitronLM

    path = tiny_models["llama-tied"]
    model, arch, _ = load_model(str(path))
    return MinitronLM(model, arch, AutoTokenizer.from_pretrained(path), batch_size=4), path


def test_generate_until_matches_minitron_generate(tiny_lm, tmp_path):
    lm, path = tiny_lm
    free = lm.generate_until([Req(p, {"max_gen_toks": 10, "until": []}) for p in PROMPTS])
    # a stop string taken from each free completion's middle: generation must end before it
    stops = [t[3:6] if len(t) >= 6 else "\x00" for t in free]
    kwargs = [
        {"max_gen_toks": 10, "until": [s], "do_sample": False, "temperature": 0.0} for s in stops
    ]
    got = lm.generate_until([Req(p, k) for p, k in zip(PROMPTS, kwargs)])
    for f, g, s in zip(free, got, stops):
        assert g == (f[: f.find(s)] if s in f else f)
    assert any(s in f for f, s in zip(free, stops))  # the stop strings were exercised
    # the same requests through the command: one stop string for all, so one run
    (tmp_path / "p.jsonl").write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS))
    for stop in (None, stops[0]):
        args = [
            "generate",
            "--model",
            str(path),
            "--input",
            str(tmp_path / "p.jsonl"),
            "--out",
            str(tmp_path / f"{stop is None}.jsonl"),
            "sampling.max_new_tokens=10",
            "batch_size=4",
        ] + ([f"sampling.stop=[{json.dumps(stop)}]"] if stop else [])
        minitron(args)
        rows = [
            json.loads(x) for x in (tmp_path / f"{stop is None}.jsonl").read_text().splitlines()
        ]
        until = [stop] if stop else []
        ours = lm.generate_until([Req(p, {"max_gen_toks": 10, "until": until}) for p in PROMPTS])
        assert [r["completion"] for r in rows] == ours


def test_sampled_generate_until_is_seeded(tiny_lm):
    lm, _ = tiny_lm
    reqs = [Req(p, {"max_gen_toks": 8, "do_sample": True, "temperature": 1.5}) for p in PROMPTS]
    a, b = lm.generate_until(reqs), lm.generate_until(reqs)
    lm.seed += 1
    c = lm.generate_until(reqs)
    lm.seed -= 1
    assert a == b and a != c


def test_gen_kwargs_are_read_as_lm_eval_does():
    from minitron.eval.lm_eval_adapter import sampling_from_gen_kwargs as read

    s = read({"until": "Q:", "max_gen_toks": 7, "temperature": 0.0}, 3)
    assert (s.stop, s.max_new_tokens, s.do_sample, s.seed) == (["Q:"], 7, False, 3)
    assert read({}, 0).max_new_tokens == 256 and not read({}, 0).do_sample
    s = read({"do_sample": True}, 0)
    assert s.do_sample and s.temperature == 1.0
    s = read({"do_sample": True, "temperature": 0.7, "top_p": 0.9}, 0)
    assert (s.temperature, s.top_p) == (0.7, 0.9)
    assert not read({"do_sample": True, "temperature": 0}, 0).do_sample  # 0 is greedy
    with pytest.raises(ValueError, match="repetition_penalty"):
        read({"repetition_penalty": 1.1}, 0)


def test_chat_template_interface_renders_like_align(tiny_lm, smollm2_dir):
    from transformers import AutoTokenizer

    from minitron.align.data import ChatRenderer
    from minitron.eval.lm_eval_adapter import MinitronLM

    lm, _ = tiny_lm
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}]
    assert lm.apply_chat_template(chat) == "System: Be brief.\nUser: Hi?\nAssistant:"
    assert lm.chat_template(True) == "plain" and lm.chat_template(False) is None
    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    if not getattr(tok, "chat_template", None):
        pytest.skip("this SmolLM2 tokenizer has no chat template")
    smol = MinitronLM(lm.model, lm.arch, tok)
    assert smol.apply_chat_template(chat) == ChatRenderer(tok).text(chat, True)
    assert smol.apply_chat_template(chat, False) == tok.apply_chat_template(chat, tokenize=False)
    assert smol.chat_template(True) == tok.chat_template


# ------------------------------------------------------------------ the IFEval-format set


def _rows():
    from minitron.eval.lm_tasks import DATA

    return [json.loads(x) for x in (DATA / "ifeval_mini.jsonl").read_text().splitlines()]


def test_ifeval_mini_rows_are_valid_for_lm_evals_checkers():
    pytest.importorskip("langdetect")
    from lm_eval.tasks.ifeval import instructions_registry as reg

    rows = _rows()
    assert len(rows) >= 100 and len({r["key"] for r in rows}) == len(rows)
    kinds = set()
    for r in rows:
        assert len(r["instruction_id_list"]) == len(r["kwargs"]) >= 1, r["key"]
        for iid, kw in zip(r["instruction_id_list"], r["kwargs"]):
            # lm-eval drops falsy kwargs and would then draw a random value
            assert all(v for v in kw.values()), (r["key"], iid, kw)
            checker = reg.INSTRUCTION_DICT[iid](iid)
            checker.build_description(**kw)
            args = checker.get_instruction_args()
            if args and "prompt" in args:  # as lm-eval's process_results does
                checker.build_description(prompt=r["prompt"])
            assert isinstance(checker.check_following("some answer"), bool)
            kinds.add(iid.split(":")[0])
    assert kinds >= {
        "length_constraints",
        "keywords",
        "change_case",
        "detectable_format",
        "punctuation",
        "startend",
        "detectable_content",
    }


def test_ifeval_mini_scored_by_lm_evals_process_results():
    pytest.importorskip("langdetect")
    from lm_eval.tasks.ifeval.utils import process_results

    rows = {r["key"]: r for r in _rows()}
    lower = next(
        r for r in rows.values() if r["instruction_id_list"] == ["change_case:english_lowercase"]
    )
    ok = process_results(lower, ["the dough rests so the gluten relaxes and the bread rises well."])
    bad = process_results(lower, ["The Dough Rests So The Gluten Relaxes."])
    assert ok["prompt_level_strict_acc"] and not bad["prompt_level_strict_acc"]
    comma = next(r for r in rows.values() if r["instruction_id_list"] == ["punctuation:no_comma"])
    assert process_results(comma, ["Fine and dry."])["prompt_level_loose_acc"]
    assert not process_results(comma, ["Fine, dry."])["prompt_level_loose_acc"]


def test_ifeval_mini_runs_through_lm_eval_offline(tiny_models, tmp_path):
    pytest.importorskip("langdetect")
    out, samples = tmp_path / "r.json", tmp_path / "s.jsonl"
    res = minitron(
        [
            "lm-eval",
            "--model",
            str(tiny_models["llama-tied"]),
            "--tasks",
            "ifeval_mini",
            "--limit",
            "12",
            "--apply_chat_template",
            "batch_size=6",
            "--out",
            str(out),
            f"samples={samples}",
        ],
        timeout=900,
    )
    assert "layout tp=1 pp=1 dp=1" in res.stdout
    r = read_json(out)["ifeval_mini"]
    for m in (
        "prompt_level_strict_acc",
        "inst_level_strict_acc",
        "prompt_level_loose_acc",
        "inst_level_loose_acc",
    ):
        assert 0.0 <= r[f"{m},none"] <= 1.0
    rows = [json.loads(x) for x in Path(samples).read_text().splitlines()]
    assert len(rows) == 12
    text = json.dumps(rows[0])
    assert "User: " in text and "Assistant:" in text  # rendered with the (plain) chat template
