"""Alignment: losses against hand-computed values, response-only masks, data errors, learning."""

import csv
import json
import math

import pytest
import torch

from minitron.align.data import ChatRenderer, load_pairs, pack, preference_messages, sft_messages
from minitron.align.losses import preference_loss
from minitron.errors import DataError

from helpers import minitron

T = torch.tensor


def hand(kind, pc, pl, rc, rl, beta, eta=1.0, gc=1.0, gl=0.0):
    h = (pc - rc) - (pl - rl)
    r = beta * h
    s = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    star = eta * (gc - gl)
    if kind == "dpo":
        return -math.log(s(r))
    if kind == "ipo":
        return (h - 1 / (2 * beta)) ** 2
    if kind == "rpo_sq":
        return (r - star) ** 2
    p, q = (s(star), s(r)) if kind == "rpo_bwd_kl" else (s(r), s(star))
    return p * math.log(p / q) + (1 - p) * math.log((1 - p) / (1 - q))


@pytest.mark.parametrize("kind", ["dpo", "ipo", "rpo_sq", "rpo_fwd_kl", "rpo_bwd_kl"])
def test_losses_equal_hand_computed_values(kind):
    pc, pl, rc, rl = -12.0, -15.5, -13.0, -14.0
    got, m = preference_loss(
        kind,
        T([pc]),
        T([pl]),
        T([rc]),
        T([rl]),
        beta=0.3,
        eta=2.0,
        reward_c=T([0.9]),
        reward_l=T([0.4]),
    )
    want = hand(kind, pc, pl, rc, rl, 0.3, eta=2.0, gc=0.9, gl=0.4)
    assert got.item() == pytest.approx(want, rel=1e-5)
    assert m["reward_margin"].item() == pytest.approx(0.3 * ((pc - rc) - (pl - rl)))
    assert m["reward_accuracy"].item() == 1.0  # h = 1 - (-1.5) = 2.5 > 0


@pytest.mark.parametrize(
    "kind,limit",
    [
        ("dpo", math.log(2)),
        ("ipo", 1 / (4 * 0.5**2)),
        ("rpo_sq", 1.5**2),
        (
            "rpo_bwd_kl",
            math.log(2)
            - (-(lambda s: s * math.log(s) + (1 - s) * math.log(1 - s))(1 / (1 + math.exp(-1.5)))),
        ),
        (
            "rpo_fwd_kl",
            -math.log(2)
            - 0.5 * (math.log(1 / (1 + math.exp(-1.5))) + math.log(1 / (1 + math.exp(1.5)))),
        ),
    ],
)
def test_policy_equal_to_reference_gives_the_known_constant(kind, limit):
    x = T([-7.0, -3.0])
    got, m = preference_loss(
        kind, x, x - 1, x, x - 1, beta=0.5, eta=1.5, reward_c=T([1.0, 1.0]), reward_l=T([0.0, 0.0])
    )
    assert torch.allclose(got, torch.full_like(got, limit), atol=1e-6)
    assert m["kl_to_reference"].item() == 0.0


def test_bwd_kl_tends_to_dpo_for_large_reward_gaps():
    args = (T([-1.0]), T([-2.0]), T([-1.5]), T([-1.2]))
    dpo, _ = preference_loss("dpo", *args, beta=1.0)
    rpo, _ = preference_loss(
        "rpo_bwd_kl", *args, beta=1.0, eta=50.0, reward_c=T([1.0]), reward_l=T([0.0])
    )
    assert rpo.item() == pytest.approx(dpo.item(), rel=1e-4)


def _sft_pairs():
    """Two pairs: chosen NLLs [1, 2, 3] (after a masked prompt token) and [4]; the rejected
    rows' NLLs (9) must not count."""
    ce = T([[5.0, 1.0, 2.0, 3.0], [5.0, 4.0, 0.0, 0.0], [9.0] * 4, [9.0] * 4])
    mask = T([[0, 1, 1, 1], [0, 1, 0, 0], [0, 1, 1, 1], [0, 1, 1, 0]])
    return ce, mask


@pytest.mark.parametrize(
    "reduction,per_pair",
    [
        ("sequence_mean", (2.0 + 4.0) / 2),  # NeMo-Aligner, sft_average_log_probs: true
        ("sequence_sum", (6.0 + 4.0) / 2),  # NeMo-Aligner's default
        ("token_mean", 10.0 / 4),  # TRL: over the 4 chosen tokens
    ],
)
def test_sft_term_reductions_equal_hand_computed_values(reduction, per_pair):
    """sft_nll is a sum over the micro-batch's pairs; pair_loss adds it, weighted, to the
    summed preference loss and reports the number of pairs, which the step divides by."""
    from types import SimpleNamespace

    from minitron.align.losses import sft_nll
    from minitron.align.steps import PreferenceStep

    ce, mask = _sft_pairs()
    assert sft_nll(ce[:2], mask[:2], reduction).item() == pytest.approx(2 * per_pair)
    cfg = SimpleNamespace(
        average_log_probs=False,
        loss_kind="dpo",
        beta=0.1,
        eta=1.0,
        gt_reward_scale=1.0,
        sft_loss_weight=0.5,
        sft_reduction=reduction,
    )
    batch = {"loss_mask": mask, "reward_chosen": T([1.0, 1.0]), "reward_rejected": T([0.0, 0.0])}
    ref = -(ce * mask).sum(1)  # reference == policy: each pair's DPO loss is log 2
    loss, n, m = PreferenceStep.pair_loss(SimpleNamespace(cfg=cfg), ce, ref, batch)
    assert n == 2 and m["sft_loss"].item() == pytest.approx(2 * per_pair)
    assert (loss / n).item() == pytest.approx(math.log(2) + 0.5 * per_pair)


def test_sft_term_over_micro_batches_is_the_mean_over_all_pairs():
    """Micro-batches of 2 and 1 pairs: the summed terms over the 3 pairs are NeMo-Aligner's
    mean over pairs (sequence_sum); token_mean weights each micro-batch's mean by its pairs."""
    from minitron.align.losses import sft_nll

    ce, mask = _sft_pairs()
    third, third_mask = T([[2.5, 0.5, 7.0, 0.0]]), T([[1, 1, 0, 0]])  # 3.0 over 2 tokens
    total = sft_nll(ce[:2], mask[:2], "sequence_sum") + sft_nll(third, third_mask, "sequence_sum")
    assert (total / 3).item() == pytest.approx((6.0 + 4.0 + 3.0) / 3)
    total = sft_nll(ce[:2], mask[:2], "token_mean") + sft_nll(third, third_mask, "token_mean")
    assert (total / 3).item() == pytest.approx((2 * 10.0 / 4 + 1 * 3.0 / 2) / 3)


def test_sft_reduction_is_checked_at_load(tmp_path):
    from minitron.align import losses
    from minitron.config import align, loader
    from minitron.errors import ConfigError

    assert align.SFT_REDUCTIONS == losses.SFT_REDUCTIONS
    values = {
        "model": "m",
        "out": str(tmp_path / "o"),
        "data": "builtin:preferences",
        "algorithm": "dpo",
    }
    assert loader.load(align.AlignConfig, values=values).sft_reduction == "sequence_mean"
    with pytest.raises(ConfigError, match="sft_reduction: 'mean' is not valid") as e:
        loader.load(align.AlignConfig, values=dict(values, sft_reduction="mean"))
    assert e.value.field == "sft_reduction"


def test_response_only_mask_gives_prompt_tokens_zero_gradient(tiny_models, tiny_tokenizer, world):
    from transformers import AutoTokenizer

    from minitron.checkpoint.load import load_model
    from minitron.train.steps import cross_entropy, lm_loss_from_ce

    tok = AutoTokenizer.from_pretrained(tiny_tokenizer)
    r = ChatRenderer(tok, "plain")
    ex = r.render(
        [
            {"role": "user", "content": "Which color is the sky?"},
            {"role": "assistant", "content": "Blue."},
            {"role": "user", "content": "And grass?"},
            {"role": "assistant", "content": "Green."},
        ]
    )
    assert (
        tok.decode([i for i, m in zip(ex.ids, ex.mask) if m]).replace(" ", "") == "Blue.\nGreen.\n"
    )
    batch = {k: v[None] for k, v in pack([ex], len(ex.ids) - 1)[0].items()}
    model, arch, _ = load_model(str(tiny_models["llama-untied"]))
    logits = model(batch["tokens"], position_ids=None, attention_mask=batch["attention_mask"])
    logits.retain_grad()
    loss, _, _ = lm_loss_from_ce(cross_entropy(logits, batch["labels"]), batch)
    loss.backward()
    grad = logits.grad[0].abs().sum(-1)
    prompt = batch["loss_mask"][0] == 0
    assert grad[prompt].max() == 0 and (grad[~prompt] > 0).all()


def test_packing_is_equivalent_to_separate_sequences(tiny_models, tiny_tokenizer, world):
    from transformers import AutoTokenizer

    from minitron.checkpoint.load import load_model
    from minitron.eval.logits import full_logits

    tok = AutoTokenizer.from_pretrained(tiny_tokenizer)
    r = ChatRenderer(tok, "plain")
    a = r.render(
        [{"role": "user", "content": "one two"}, {"role": "assistant", "content": "three"}]
    )
    b = r.render(
        [{"role": "user", "content": "four"}, {"role": "assistant", "content": "five six"}]
    )
    row = pack([a, b], len(a.ids) + len(b.ids) - 2)
    assert len(row) == 1
    model, arch, _ = load_model(str(tiny_models["llama-untied"]))
    with torch.no_grad():
        packed = model(
            row[0]["tokens"][None], position_ids=None, attention_mask=row[0]["attention_mask"][None]
        )[0, :, : arch.vocab_size]
    na = len(a.ids) - 1
    alone_a = full_logits(model, torch.tensor([a.ids[:-1]]), arch.vocab_size)[0]
    alone_b = full_logits(model, torch.tensor([b.ids[:-1]]), arch.vocab_size)[0]
    torch.testing.assert_close(packed[:na], alone_a, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(packed[na : na + len(b.ids) - 1], alone_b, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(
    "row,text",
    [
        ({"prompt": "q", "chosen": "a"}, "no 'rejected' field"),
        (
            {
                "chosen": "\n\nHuman: hi\n\nAssistant: yes",
                "rejected": "\n\nHuman: bye\n\nAssistant: no",
            },
            "share the conversation",
        ),
        ({"chosen": "hello", "rejected": "bye"}, "no 'Assistant:' turn"),
        (
            {"prompt": [{"role": "boss", "content": "x"}], "chosen": "a", "rejected": "b"},
            "needs a role",
        ),
    ],
)
def test_malformed_preference_rows(row, text):
    with pytest.raises(DataError, match=text):
        preference_messages(row, "f.jsonl:3")


def test_hh_and_message_layouts():
    c, r = preference_messages(
        {"chosen": "\n\nHuman: hi\n\nAssistant: yes", "rejected": "\n\nHuman: hi\n\nAssistant: no"},
        "x",
    )
    assert c == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yes"}]
    assert r[-1]["content"] == "no"
    with pytest.raises(DataError, match="needs 'messages', or 'prompt' and 'response'"):
        sft_messages({"question": "q"}, "f.jsonl:1")


def test_rewards_default_and_must_be_numbers(tiny_tokenizer):
    from transformers import AutoTokenizer

    r = ChatRenderer(AutoTokenizer.from_pretrained(tiny_tokenizer), "plain")
    pairs = load_pairs([("x:1", {"prompt": "q", "chosen": "a", "rejected": "b"})], r, 64, 0.8, 0.1)
    assert (pairs[0].reward_chosen, pairs[0].reward_rejected) == (0.8, 0.1)
    with pytest.raises(DataError, match="x:2: rewards must be numbers"):
        load_pairs(
            [("x:2", {"prompt": "q", "chosen": "a", "rejected": "b", "chosen_reward": "high"})],
            r,
            64,
            1.0,
            0.0,
        )


def _pref_file(tmp_path):
    colors = ["red", "blue", "green", "black", "white"]
    rows = [
        {
            "prompt": f"Colour of item {i}?",
            "chosen": f"It is {colors[i % 5]}.",
            "rejected": f"It is {colors[(i + 2) % 5]}.",
            "chosen_reward": 1.0,
            "rejected_reward": 0.25,
        }
        for i in range(40)
    ]
    p = tmp_path / "pref.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in rows))
    return p


@pytest.mark.parametrize("algorithm", ["dpo", "rpo"])
def test_preference_training_raises_reward_accuracy(algorithm, tiny_models, tmp_path):
    data = _pref_file(tmp_path)
    minitron(
        [
            "align",
            "--model",
            str(tiny_models["llama-untied"]),
            "--out",
            str(tmp_path / "r"),
            "--data",
            str(data),
            "--algorithm",
            algorithm,
            f"valid_data={data}",
            "seq_length=48",
            "schedule.steps=150",
            "schedule.global_batch_size=8",
            "schedule.eval_every=150",
            "optim.lr=2e-3",
            "optim.warmup_steps=5",
            "validation_samples=40",
            "progress=false",
            "tensorboard=false",
        ],
        timeout=1200,
    )
    with open(tmp_path / "r" / "metrics.csv") as f:
        last = list(csv.DictReader(f))[-1]
    assert float(last["val_reward_accuracy"]) >= 0.9, last
    assert float(last["val_reward_margin"]) > 0


def test_reference_has_no_grads_and_no_optimizer_state(tiny_models, tmp_path, world):
    from minitron.align.data import pair_rows
    from minitron.align.steps import PreferenceStep
    from minitron.checkpoint.load import load_model
    from minitron.config import loader
    from minitron.config.align import AlignConfig
    from minitron.train import trainable

    cfg = loader.load(
        AlignConfig,
        values={
            "model": "m",
            "out": str(tmp_path / "o"),
            "data": "builtin:preferences",
            "algorithm": "dpo",
        },
    )
    policy, _, _ = load_model(str(tiny_models["llama-untied"]))
    ref, _, _ = load_model(str(tiny_models["llama-untied"]))
    trainable.freeze(ref)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_models["llama-untied"])
    pairs = load_pairs(
        [("x", {"prompt": "q", "chosen": "yes", "rejected": "no"})],
        ChatRenderer(tok, "plain"),
        32,
        1.0,
        0.0,
    )
    PreferenceStep(policy, ref, cfg).step([pair_rows(pairs)])
    assert all(p.grad is None and not p.requires_grad for p in ref.parameters())
    assert any(p.grad is not None for p in policy.parameters())
