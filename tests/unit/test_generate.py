"""Generation on megatron-core's inference engine: SmolLM2-135M greedy equals transformers'
greedy ``generate`` token for token, batched and unbatched; seeded sampling is reproducible;
stop strings and end-of-sequence ids end completions where they should; ``minitron generate``
writes one row per prompt and resumes."""

import json

import pytest
import torch

from minitron.config.generate import GenerateConfig, SamplingConfig
from minitron.config.loader import load
from minitron.errors import ConfigError
from minitron.generate.engine import cut, eos_ids

from helpers import minitron

PROMPTS = [
    "The capital of France is",
    "Once upon a time",
    "Water boils at",
    "In 1969, the first person to walk on the Moon was",
    "The three primary colours are red,",
    "def fibonacci(n):",
    "A recipe for pancakes: first, mix the flour with",
    "Photosynthesis is the process by which plants use sunlight, water and carbon dioxide to",
]
NEW = 12


@pytest.fixture(scope="module")
def smol(world, smollm2_dir):
    from transformers import AutoTokenizer

    from minitron.checkpoint.load import load_model
    from minitron.generate.engine import Generator

    model, arch, _ = load_model(str(smollm2_dir), "float32")
    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    return model, arch, tok, Generator


@pytest.fixture(scope="module")
def reference(smollm2_dir, smol):
    """transformers' greedy completions, one prompt at a time (EOS kept, as HF returns it)."""
    from transformers import AutoModelForCausalLM

    tok = smol[2]
    hf = AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32).eval()
    out = []
    with torch.no_grad():
        for p in PROMPTS:
            ids = tok(p, return_tensors="pt")["input_ids"]
            g = hf.generate(ids, max_new_tokens=NEW, do_sample=False, pad_token_id=tok.eos_token_id)
            out.append(g[0, ids.shape[1] :].tolist())
    return out


def _ours(smol, batch_size, sampling=None):
    model, arch, tok, Generator = smol
    gen = Generator(model, arch, tok, batch_size=batch_size)
    ids = [tok(p)["input_ids"] for p in PROMPTS]
    return gen.generate(ids, sampling or SamplingConfig(max_new_tokens=NEW)), tok


@pytest.mark.parametrize("batch_size", [8, 3, 1])
def test_greedy_equals_transformers(smol, reference, batch_size):
    done, tok = _ours(smol, batch_size)
    assert len({len(tok(p)["input_ids"]) for p in PROMPTS}) >= 6  # lengths really differ
    for c, ref in zip(done, reference):
        got = c.tokens + ([tok.eos_token_id] if c.finish == "eos" else [])
        assert got == ref, (tok.decode(got), tok.decode(ref))
        assert c.finish in ("eos", "length") and c.text == tok.decode(c.tokens)


def test_generation_leaves_model_mode_and_rng_alone(smol):
    model = smol[0]
    model.train()
    state = torch.get_rng_state()
    _ours(smol, 8, SamplingConfig(max_new_tokens=2))
    assert model.training and torch.equal(state, torch.get_rng_state())
    model.eval()


def test_seeded_sampling_is_reproducible(smol):
    s = SamplingConfig(max_new_tokens=10, do_sample=True, temperature=1.2, top_k=40, seed=7)
    a, _ = _ours(smol, 8, s)
    b, _ = _ours(smol, 8, s)
    c, _ = _ours(smol, 8, SamplingConfig(**{**s.__dict__, "seed": 8}))
    assert [x.tokens for x in a] == [x.tokens for x in b]
    assert [x.tokens for x in a] != [x.tokens for x in c]
    p, _ = _ours(smol, 8, SamplingConfig(max_new_tokens=10, do_sample=True, top_p=0.9, seed=7))
    assert [x.tokens for x in p] != [x.tokens for x in a]


def test_stop_strings_end_before_the_string(smol, reference):
    tok = smol[2]
    full = [tok.decode(r) for r in reference]
    i = next(k for k, t in enumerate(full) if len(t.split()) >= 4)
    word = " " + full[i].split()[2]  # the third word, with its space
    done, _ = _ours(smol, 8, SamplingConfig(max_new_tokens=NEW, stop=[word]))
    c = done[i]
    assert c.finish == "stop" and c.text == full[i][: full[i].find(word)]
    assert tok.decode(c.tokens) == c.text  # the tokens are those of the text


# ------------------------------------------------------------------ pure parts


def test_cut_at_eos_ids_and_stop_strings():
    vocab = {1: "a", 2: "b", 3: " STOP", 4: "c", 9: "<eos>"}

    def decode(ids):
        return "".join(vocab[i] for i in ids)

    assert cut([1, 2, 4], decode, [9], [], ended_on_eos=False) == ([1, 2, 4], "abc", "length")
    assert cut([1, 2], decode, [9], [], ended_on_eos=True) == ([1, 2], "ab", "eos")
    assert cut([1, 9, 2], decode, [5, 9], [], ended_on_eos=False) == ([1], "a", "eos")
    assert cut([1, 2, 3, 4], decode, [9], ["STOP"], False) == ([1, 2], "ab ", "stop")
    assert cut([1, 2, 3, 4], decode, [9], ["bc", " ST"], False) == ([1, 2], "ab", "stop")
    assert cut([4, 1], decode, [9], ["zz"], False) == ([4, 1], "ca", "length")


def test_eos_ids_first_is_the_tokenizers():
    class T:
        eos_token_id = 5

    assert eos_ids(T(), [7, 5, None, 8]) == [5, 7, 8]
    T.eos_token_id = None
    assert eos_ids(T(), [3]) == [3]
    with pytest.raises(ValueError, match="end-of-sequence"):
        eos_ids(T(), [])


@pytest.mark.parametrize(
    "over,field",
    [
        ({"sampling": {"do_sample": True, "top_k": 5, "top_p": 0.9}}, "top_p"),
        ({"sampling": {"do_sample": True, "temperature": 0.0}}, "temperature"),
        ({"sampling": {"max_new_tokens": 0}}, "max_new_tokens"),
        ({"sampling": {"stop": [""]}}, "stop"),
        ({"prompt": None}, "prompt"),
        ({"chat": "jinja"}, "chat"),
    ],
)
def test_config_errors_name_the_field(over, field):
    base = {"model": "m", "prompt": "hi"}
    with pytest.raises(ConfigError, match=field):
        load(GenerateConfig, values={**base, **over})


# ------------------------------------------------------------------ the command


def test_generate_command_writes_rows_and_resumes(smollm2_dir, tmp_path):
    rows = [{"id": f"p{i}", "prompt": p} for i, p in enumerate(PROMPTS[:5])]
    rows.append({"messages": [{"role": "user", "content": "Name a fruit."}]})
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = [
        "generate",
        "--model",
        str(smollm2_dir),
        "--input",
        str(tmp_path / "in.jsonl"),
        "chat=plain",
        "batch_size=1",
        "sampling.max_new_tokens=6",
        'sampling.stop=["\\n\\n"]',
    ]
    res = minitron(args + ["--out", str(tmp_path / "full.jsonl")], timeout=900)
    assert "layout tp=1 pp=1 dp=1" in res.stdout
    full = [json.loads(x) for x in (tmp_path / "full.jsonl").read_text().splitlines()]
    assert [r["id"] for r in full] == ["p0", "p1", "p2", "p3", "p4", 5]
    assert all(
        r["prompt"].startswith("User: ") and r["prompt"].endswith("Assistant:") for r in full
    )
    assert all(
        0 < r["completion_tokens"] <= 6 and r["finish"] in ("eos", "stop", "length") for r in full
    )
    # a run killed after its first chunk (4 prompts at batch_size 1) continues from there
    (tmp_path / "part.jsonl").write_text("".join(json.dumps(r) + "\n" for r in full[:4]))
    res = minitron(args + ["--out", str(tmp_path / "part.jsonl")], timeout=900)
    assert "4 of 6 prompts already" in res.stdout
    part = [json.loads(x) for x in (tmp_path / "part.jsonl").read_text().splitlines()]

    def strip(rs):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in rs]

    assert strip(part) == strip(full)
    # an output longer than the input is someone else's
    (tmp_path / "long.jsonl").write_text("".join(json.dumps(r) + "\n" for r in full * 2))
    res = minitron(args + ["--out", str(tmp_path / "long.jsonl")], check=False)
    assert res.returncode != 0 and "out" in res.stderr + res.stdout


def test_generation_config_eos_ids(tmp_path):
    from minitron.generate.engine import generation_eos

    assert generation_eos(tmp_path) == []
    (tmp_path / "generation_config.json").write_text('{"eos_token_id": [128001, 128009]}')
    assert generation_eos(tmp_path) == [128001, 128009]
    (tmp_path / "generation_config.json").write_text('{"eos_token_id": 2}')
    assert generation_eos(tmp_path) == [2]
