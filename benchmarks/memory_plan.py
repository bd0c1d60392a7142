""".venv/bin/python benchmarks/memory_plan.py

Memory plan (issue 11): per-GPU memory and step time of the paper's three runs
(``examples/llama-3.1-8b/run_width.yaml``, ``run_depth.yaml``,
``examples/mistral-nemo-12b/run.yaml``) at their layouts on 32 nodes x 8 GPUs (dp = 256 /
(tp pp)), with each YAML's dtype and engine options (``sequence_parallel``, ``recompute``,
``use_distributed_optimizer``, ``grad_reduce_in_fp32``; defaults: off, none, on at dp > 1, on):
teacher correction (teacher trained alone) and distillation (student trained, teacher
frozen, forward-KL loss chunked by ``distill.loss.chunk_size``). A run that does not fit
80 GB gets the first layout change that does. Then sanity checks against published figures:
Korthikanti et al. 2022 Table 2 (GPT-3 175B), Megatron-LM's ``theoretical_memory_usage.py``
(bytes per parameter, and its SP + selective activation formula for Llama-3.1-8B) and ZeRO's
16 bytes per parameter. Pure arithmetic, no GPU; writes
``benchmarks/results/memory_plan.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from minitron.config.loader import load  # noqa: E402
from minitron.config.run import RunConfig  # noqa: E402
from minitron.models.arch import load_arch  # noqa: E402
from minitron.train.memory import (  # noqa: E402
    GB,
    ModelRole,
    Precision,
    check_layout,
    layer_activation_bytes,
    plan,
    stage_params,
)

RUNS = {
    "4B-Width": "examples/llama-3.1-8b/run_width.yaml",
    "4B-Depth": "examples/llama-3.1-8b/run_depth.yaml",
    "MN-8B": "examples/mistral-nemo-12b/run.yaml",
}
GPUS, GPU_GB, HEADROOM = 256, 80.0, 0.85  # keep 15 % for CUDA context, NCCL, fragmentation
OUT = ROOT / "benchmarks/results/memory_plan.json"
MEGATRON_LM = (
    "NVIDIA/Megatron-LM megatron/training/theoretical_memory_usage.py "
    "@00caa53af30912914981c86f39db123961678bbd"
)
# Layout changes tried, in order, when a plan does not fit (all keep the GPU count).
FALLBACKS = [
    dict(sequence_parallel=True),
    dict(sequence_parallel=True, recompute="full"),
    dict(sequence_parallel=True, recompute="full", pp=2),
]


def stage_plans(cfg: RunConfig, overrides: dict | None = None) -> dict:
    """{stage: MemoryPlan} of one run's correction and every student's distillation."""
    teacher = load_arch(ROOT / cfg.model)
    o = dict(overrides or {})
    tp, pp = cfg.tp, o.pop("pp", cfg.pp)
    dp = GPUS // (tp * pp)
    knob = lambda name, default: getattr(cfg, name, default)  # noqa: E731 (older configs)
    dist = knob("use_distributed_optimizer", None)  # None: on when dp > 1 (TrainingBase)
    precision = Precision(
        cfg.dtype,
        grad_reduce_in_fp32=knob("grad_reduce_in_fp32", True),
        use_distributed_optimizer=dp > 1 if dist is None else dist,
    )
    engine = dict(
        sequence_parallel=knob("sequence_parallel", False),
        recompute=knob("recompute", "none"),
        recompute_num_layers=knob("recompute_num_layers", 1),
    )
    common = dict(
        tp=tp,
        pp=pp,
        dp=dp,
        seq_length=cfg.data.seq_length,
        precision=precision,
        flops_per_second=cfg.flops_per_second,
        **{**engine, **o},
    )
    out = {}
    if cfg.correct.enabled:
        assert cfg.correct.mode == "full", "only full correction is planned here"
        s = cfg.correct.schedule
        out["correct (teacher)"] = plan(
            [("teacher", ModelRole(teacher))],
            micro_batch_size=s.micro_batch_size,
            global_batch_size=s.global_batch_size,
            **common,
        )
    d = cfg.distill.schedule
    for st in cfg.students:
        student = teacher.replace(**st.target.sizes())
        check_layout(student, tp, pp)
        out[f"distill ({st.name})"] = plan(
            [("student", ModelRole(student)), ("teacher", ModelRole(teacher, trained=False))],
            micro_batch_size=d.micro_batch_size,
            global_batch_size=d.global_batch_size,
            loss_kind="kd",
            loss_chunk_tokens=cfg.distill.loss.chunk_size,
            **common,
        )
    return out


def megatron_lm_estimate(arch, tp: int, pp: int, dp: int, s: int, b: int) -> dict:
    """Megatron-LM's theoretical_memory_usage.py for a dense GQA SwiGLU model with the
    distributed optimizer, SP and selective recompute (its compute_activation_memory), pp = 1."""
    h, f, L, V = arch.hidden_size, arch.ffn_hidden_size, arch.num_layers, arch.padded_vocab_size
    qratio = arch.num_attention_heads * arch.head_dim / h
    layer = (
        2 * h * (f * 1.5 + 1)
        + 2 * h * h * (1 + arch.num_query_groups / arch.num_attention_heads) * qratio
    )
    block = layer * L + h
    shard = (block / pp + V * h) / tp + (V * h / tp if pp == 1 else 0)
    act_layer = s * b * h * (18 + 4 * f / h)
    act = act_layer * L + 8 * s * b * pp + s * b * h * pp + s * b * h * 4 * (1 + V / h)
    return {
        "params_on_shard": shard,
        "weight_and_optimizer": shard * (6 + 12 / dp),
        "activation_per_layer": act_layer / tp,
        "activation": act / tp,
    }


def sanity() -> dict:
    """Published figures against the planner; each entry has ours, theirs and the ratio."""
    out = {}
    # Korthikanti et al. 2022, Table 2, GPT-3 175B: h 12288, a 96, s 2048, b 1, t 8
    h, a, s, t = 12288, 96, 2048, 8
    sbh = s * h
    rows = {
        "no parallelism: 34 + 5as/h": (dict(), 34 + 5 * a * s / h),
        "tensor parallel: 10 + 24/t + 5as/(ht)": (dict(tp=t), 10 + 24 / t + 5 * a * s / (h * t)),
        "tensor + sequence parallel: 34/t + 5as/(ht)": (
            dict(tp=t, sequence_parallel=True),
            34 / t + 5 * a * s / (h * t),
        ),
        "tensor parallel + selective: 10 + 24/t": (dict(tp=t, selective=True), 10 + 24 / t),
        "tensor + sequence parallel + selective: 34/t": (
            dict(tp=t, sequence_parallel=True, selective=True),
            34 / t,
        ),
    }
    for name, (kw, paper) in rows.items():
        ours = (
            layer_activation_bytes(
                h, 4 * h, a, a, h // a, s, 1, gated=False, dropout=True, flash=False, **kw
            )
            / sbh
        )
        out[f"Korthikanti 2022 Table 2, GPT-3 175B, {name} (x sbh bytes per layer)"] = {
            "ours": ours,
            "published": paper,
            "ratio": ours / paper,
        }
    # Megatron-LM: 18 bytes/param, 6 + 12/dp with the distributed optimizer (issue #654)
    teacher = load_arch(ROOT / "examples/llama-3.1-8b")
    for dp, dist in ((1, False), (32, True)):
        p = plan(
            [("t", ModelRole(teacher))],
            tp=8,
            dp=dp,
            seq_length=8192,
            precision=Precision("bfloat16", use_distributed_optimizer=dist),
        )
        state = sum(
            v for k, v in p.parts.items() if not k.endswith("activations") and k != "loss buffers"
        )
        ours = state / p.params_per_gpu["t"]
        theirs = 18 if not dist else 6 + 12 / dp
        out[
            f"bytes per parameter, bf16, dp={dp}, distributed optimizer={dist} "
            f"(Megatron-LM: 18 or 6 + 12/dp)"
        ] = {"ours": ours, "published": theirs, "ratio": ours / theirs}
    # ZeRO (Rajbhandari et al. 2020, sec. 3.1): 16 bytes/param, GPT-2 1.5B needs >= 24 GB
    small = load_arch(ROOT / "examples/llama-3.2-1b")
    p = plan(
        [("m", ModelRole(small))],
        seq_length=64,
        precision=Precision("bfloat16", grad_reduce_in_fp32=False),
    )
    per = (
        sum(
            p.parts[f"m {k}"]
            for k in ("weights", "gradients", "fp32 main params", "optimizer (Adam moments)")
        )
        / p.params_per_gpu["m"]
    )
    out["ZeRO 16 Psi: GPT-2 1.5B model state, GB"] = {
        "ours": per * 1.5,
        "published": 24.0,
        "ratio": per / 16,
    }
    # Megatron-LM's SP + selective activation formula for Llama-3.1-8B (tp 8, s 8192, b 1)
    meg = megatron_lm_estimate(teacher, 8, 1, 32, 8192, 1)
    ours_layer = layer_activation_bytes(
        4096, 14336, 32, 8, 128, 8192, 1, tp=8, sequence_parallel=True, selective=True
    )
    out["Llama-3.1-8B activation per layer, SP + selective, tp 8, s 8192 (Megatron-LM)"] = {
        "ours": ours_layer / GB,
        "published": meg["activation_per_layer"] / GB,
        "ratio": ours_layer / meg["activation_per_layer"],
    }
    p = plan(
        [("t", ModelRole(teacher))],
        tp=8,
        dp=32,
        seq_length=8192,
        global_batch_size=1152,
        sequence_parallel=True,
        recompute="selective",
        precision=Precision("bfloat16", use_distributed_optimizer=True),
    )
    ours_act = p.parts["t activations"] + p.parts["loss buffers"]
    out["Llama-3.1-8B activations + logits/loss, SP + selective, tp 8 (Megatron-LM), GB"] = {
        "ours": ours_act / GB,
        "published": meg["activation"] / GB,
        "ratio": ours_act / meg["activation"],
    }
    state = sum(
        v for k, v in p.parts.items() if not k.endswith("activations") and k != "loss buffers"
    )
    out["Llama-3.1-8B weights + optimizer, tp 8, dp 32 (Megatron-LM), GB"] = {
        "ours": state / GB,
        "published": meg["weight_and_optimizer"] / GB,
        "ratio": state / meg["weight_and_optimizer"],
    }
    assert stage_params(teacher, 8, 1, "only") == p.params_per_gpu["t"]
    return out


def markdown(runs: dict) -> str:
    """One table: a column per (run, stage) (a correction shared by two runs once), a row per
    part, the total and the verdicts."""
    cols, seen = [], []
    for r, plans in runs.items():
        for st, p in plans.items():
            if p.to_dict() in seen:  # the same plan in another run: name both
                i = seen.index(p.to_dict())
                cols[i] = (cols[i][0].replace(":", f" = {r}:", 1), cols[i][1])
            else:
                seen.append(p.to_dict())
                cols.append((f"{r}: {st}", p))
    rows = [
        "| part (GB = 10^9 bytes) | " + " | ".join(c for c, _ in cols) + " |",
        "|---|" + "---:|" * len(cols),
    ]
    for k in dict.fromkeys(k for _, p in cols for k in p.parts):
        rows.append(
            f"| {k} | "
            + " | ".join(f"{p.parts[k] / GB:.2f}" if k in p.parts else "-" for _, p in cols)
            + " |"
        )
    rows.append(
        "| **total** | " + " | ".join(f"**{p.total_bytes / GB:.2f}**" for _, p in cols) + " |"
    )
    for label, limit in (
        (f"fits {GPU_GB:g} GB", GPU_GB),
        (f"fits {HEADROOM * GPU_GB:g} GB (15 % kept free)", HEADROOM * GPU_GB),
    ):
        rows.append(
            f"| {label} | "
            + " | ".join("yes" if p.total_bytes <= limit * GB else "**no**" for _, p in cols)
            + " |"
        )
    rows.append("| step time (s) | " + " | ".join(f"{p.step_time_s:.1f}" for _, p in cols) + " |")
    return "\n".join(rows)


def main():
    runs, fixes, result = {}, {}, {"gpus": GPUS, "gpu_memory_gb": GPU_GB, "runs": {}}
    for name, path in RUNS.items():
        cfg = load(RunConfig, ROOT / path)
        plans = runs[name] = stage_plans(cfg)
        result["runs"][name] = {"config": path, "stages": {}}
        print(f"\n== {name} ({path}) ==")
        for st, p in plans.items():
            print(f"-- {st}\n{p.format(GPU_GB)}")
            entry = {
                **p.to_dict(),
                "fits": p.total_bytes <= GPU_GB * GB,
                "fits_with_headroom": p.total_bytes <= HEADROOM * GPU_GB * GB,
            }
            if not entry["fits"]:
                for fb in FALLBACKS:
                    alt = stage_plans(cfg, fb)[st]
                    if alt.total_bytes <= GPU_GB * GB:
                        fixes[(name, st)] = (fb, alt)
                        entry["fits_with"] = {"change": fb, "total_gb": alt.total_bytes / GB}
                        print(
                            f"   DOES NOT FIT at its layout; fits with {fb}: "
                            f"{alt.total_bytes / GB:.2f} GB"
                        )
                        break
                else:
                    print("   DOES NOT FIT, not even with " + str(FALLBACKS[-1]))
            result["runs"][name]["stages"][st] = entry
    print("\n" + markdown(runs))
    result["sanity"] = checks = sanity()
    print(f"\nsanity checks (ratio = ours / published; Megatron-LM: {MEGATRON_LM}):")
    for k, v in checks.items():
        print(
            f"  {k}: ours {v['ours']:.4g}, published {v['published']:.4g}, ratio {v['ratio']:.4f}"
        )
    result["megatron_lm_source"] = MEGATRON_LM
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    print(f"\nwrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
