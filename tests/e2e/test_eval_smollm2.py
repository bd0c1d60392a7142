"""Winogrande on SmolLM2-135M: minitron's batched scoring equals an independent transformers loop."""

import gzip
import json

import pytest
import torch

from minitron.config.schema import MCTaskConfig
from minitron.eval.tasks import BUILTIN_WINOGRANDE, fewshot_prefixes, subset

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smol(smollm2_dir, world):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from minitron.checkpoint.load import load_model
    from minitron.eval.evaluator import Evaluator

    model, arch, _ = load_model("smollm2-135m")
    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    hf = AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32).eval()
    return Evaluator(model, arch, tok, batch_size=16), tok, hf


def independent_ll(hf, tok, context: str, continuation: str) -> float:
    """Partial scoring written out plainly: one sequence at a time, no batching, no padding."""
    whole = tok(context + continuation, add_special_tokens=False).input_ids
    n_ctx = len(tok(context, add_special_tokens=False).input_ids)
    ids = torch.tensor([whole])
    with torch.no_grad():
        logp = torch.log_softmax(hf(ids).logits[0].double(), -1)
    return sum(logp[t - 1, whole[t]].item() for t in range(n_ctx, len(whole)))


@pytest.mark.parametrize("shots,limit", [(0, 40), (2, 12)])
def test_winogrande_equals_transformers(smol, shots, limit):
    ev, tok, hf = smol
    task = MCTaskConfig(limit=limit, seed=7, num_fewshot=shots)
    prepared = ev.prepare(task)
    ours = ev.multiple_choice(prepared)
    rows = [json.loads(line) for line in gzip.open(BUILTIN_WINOGRANDE, "rt")]
    rows = subset(rows, limit, 7)  # the same seeded subset, as raw rows
    # the few-shot text is minitron's draw; what is checked is the scoring of it
    prefixes = fewshot_prefixes(prepared.items, prepared.items, shots, 7, True)
    worst = 0.0
    for i, row in enumerate(rows):
        blank = row["sentence"].index("_")
        rest = " " + row["sentence"][blank + 1 :].strip()
        lls = [
            independent_ll(hf, tok, prefixes[i] + row["sentence"][:blank] + row[o], rest)
            for o in ("option1", "option2")
        ]
        worst = max(worst, *(abs(a - b) for a, b in zip(lls, ours["loglikelihoods"][i])))
        assert ours["predictions"][i] == max(range(2), key=lls.__getitem__), f"item {i}"
    assert worst <= 1e-3, worst
    assert ours["n"] == limit
