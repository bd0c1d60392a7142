"""megatron-core's engine as minitron drives it: token-weighted losses whatever the split,
fp32 main weights for bf16 models, bf16 close to fp32."""

import pytest
import torch

from minitron.config.train import OptimConfig


def _batch(n=4, s=16, lengths=(16, 2, 9, 5), seed=0):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, 300, (n, s), generator=g)
    mask = torch.zeros(n, s)
    for i, length in enumerate(lengths):
        mask[i, :length] = 1
    return {"tokens": tokens, "labels": torch.roll(tokens, -1, 1), "loss_mask": mask}


def _engine(src, dtype="float32", execution=None, **optim):
    from minitron.checkpoint.load import load_model
    from minitron.models.builder import DTYPES, Execution
    from minitron.parallel.engine import Engine, EngineOptions

    model, _, _ = load_model(src, dtype, execution=execution or Execution())
    return Engine(model, OptimConfig(**optim), EngineOptions(dtype=DTYPES[dtype]))


def _step(eng, batch, micro):
    """Forward/backward over ``batch`` in micro-batches of ``micro``; (loss, per-micro)."""
    from minitron.parallel.schedule import reduce_metrics
    from minitron.train.loop import split_micro
    from minitron.train.steps import lm_step

    eng.zero_grad()
    per = lm_step(eng.ddp, split_micro(batch, micro))
    eng.finalize(sum(int(m["count"]) for m in per))
    return reduce_metrics(per)["loss"], per


def test_loss_and_gradients_do_not_depend_on_the_micro_batch_split(tiny_models, world):
    eng = _engine(str(tiny_models["llama-untied"]))
    batch = _batch()  # rows with 16, 2, 9 and 5 loss tokens
    runs = []
    for micro in (4, 2, 1):
        loss, per = _step(eng, batch, micro)
        runs.append((loss, torch.cat([b.grad_data.clone() for b in eng.ddp.buffers]), per))
    loss4, grad4, _ = runs[0]
    for loss, grad, _ in runs[1:]:
        assert abs(loss - loss4) <= 1e-6
        assert (grad - grad4).abs().max().item() <= 1e-6
    # the mean of per-micro-batch means (the old loop) differs: the test can tell them apart
    per1 = runs[2][2]
    mean_of_means = sum(float(m["loss"]) / float(m["count"]) for m in per1) / len(per1)
    assert abs(mean_of_means - loss4) > 1e-3


@pytest.mark.parametrize("recompute", ["selective", "full"])
def test_recomputation_gives_the_same_loss_and_gradients(recompute, tiny_models, world):
    from minitron.models.builder import Execution

    src = str(tiny_models["llama-untied"])
    batch = _batch()
    runs = []
    for ex in (Execution(), Execution(recompute=recompute, recompute_num_layers=2)):
        eng = _engine(src, execution=ex)
        assert eng.model.config.recompute_granularity == (
            None if ex.recompute == "none" else recompute
        )
        loss, _ = _step(eng, batch, 2)
        runs.append((loss, torch.cat([b.grad_data.clone() for b in eng.ddp.buffers])))
    assert abs(runs[0][0] - runs[1][0]) <= 1e-6
    assert (runs[0][1] - runs[1][1]).abs().max().item() <= 1e-6


def _norm_weights(model):
    return {n: p.detach().clone() for n, p in model.named_parameters() if "layernorm" in n}


def test_bf16_small_updates_move_weights_through_fp32_main_weights(tiny_models, world):
    """lr 1e-4 on norm weights near 1 (bf16 spacing 2^-7): pure bf16 AdamW rounds every
    update away; megatron-core's optimizer accumulates them in fp32 main weights."""
    from minitron.checkpoint.load import load_model
    from minitron.parallel.schedule import pipeline_train_step
    from minitron.train.steps import lm_loss_from_ce

    src = str(tiny_models["llama-untied"])
    eng = _engine(src, "bfloat16", lr=1e-4, weight_decay=0.0)
    plain, _, _ = load_model(src, "bfloat16")
    plain.config.calculate_per_token_loss = False  # the schedule averages, as a plain loop
    adam = torch.optim.AdamW(plain.parameters(), lr=1e-4, weight_decay=0.0)
    before = _norm_weights(eng.model)
    batch = _batch(lengths=(16, 16, 16, 16))
    for _ in range(40):
        eng.set_lr(1e-4)
        _step(eng, batch, 4)
        ok, _ = eng.step()
        assert ok
        adam.zero_grad()
        pipeline_train_step(plain, [batch], lm_loss_from_ce, with_labels=True)
        adam.step()
    after_engine, after_plain = _norm_weights(eng.model), _norm_weights(plain)
    moved = sum(int((after_engine[n] != before[n]).sum()) for n in before)
    total = sum(t.numel() for t in before.values())
    assert moved > total // 4, f"{moved} of {total} bf16 norm weights moved"
    assert all(torch.equal(after_plain[n], before[n]) for n in before)


@pytest.mark.parametrize("steps", [12])
def test_bf16_training_stays_close_to_fp32(tiny_models, world, steps):
    """The same 12 steps at lr 3e-3 in bf16 (fp32 main weights) and fp32: final training loss
    within 0.05 nats (tiny model, loss ~5.7 -> ~4.5)."""
    src = str(tiny_models["llama-untied"])
    finals = {}
    for dtype in ("float32", "bfloat16"):
        eng = _engine(src, dtype, lr=3e-3, weight_decay=0.0)
        for i in range(steps):
            eng.set_lr(3e-3)
            loss, _ = _step(eng, _batch(seed=i % 3, lengths=(16, 12, 9, 16)), 2)
            eng.step()
        finals[dtype] = loss
    assert finals["float32"] < 5.5  # it trained
    assert abs(finals["bfloat16"] - finals["float32"]) < 0.05, finals


@pytest.mark.parametrize("stage", ["distill", "correct", "align"])
def test_dry_run_prints_the_memory_plan_and_refuses_one_over_budget(
    stage, tiny_models, calib, tmp_path
):
    from helpers import minitron

    src, out = str(tiny_models["llama-untied"]), tmp_path / "run"
    args = {
        "distill": ["distill", "--student", src, "--teacher", src],
        "correct": ["correct", "--model", src],
        "align": ["align", "--model", src, "--algorithm", "dpo", "--data", "builtin:preferences"],
    }[stage]
    args += [
        "--out",
        str(out),
        f"data.paths=[{calib}]" if stage != "align" else "beta=0.1",
        "--dry-run",
    ]
    res = minitron(args)
    trained = {"distill": "student", "correct": "teacher", "align": "policy"}[stage]
    assert f"{trained} optimizer (Adam moments)" in res.stdout and "fits" in res.stdout
    if stage != "correct":
        assert ("teacher" if stage == "distill" else "reference") + " weights" in res.stdout
    assert not out.exists()  # nothing was run
    bad = minitron(args + ["gpu_memory_gb=0.0001"], check=False)
    assert bad.returncode == 2 and "gpu_memory_gb" in bad.stderr and "largest part" in bad.stderr
