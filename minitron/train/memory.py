"""GPU memory and step time of the training stages, planned by arithmetic alone.

    from minitron.train.memory import ModelRole, Precision, plan, check
    p = plan([("student", ModelRole(student)), ("teacher", ModelRole(teacher, trained=False))],
             tp=8, pp=1, dp=32, precision=Precision("bfloat16", use_distributed_optimizer=True),
             micro_batch_size=1, seq_length=8192, global_batch_size=1152, loss_kind="kd",
             loss_chunk_tokens=4096, flops_per_second=4.1e16)
    print(p.format()); check(p, gpu_memory_gb=80)

Bytes on one GPU of the most loaded pipeline stage for megatron-core Llama-family GPTModels
(SwiGLU, GQA, RMSNorm, RoPE, no biases or dropout) under megatron-core's DDP and
``get_megatron_optimizer`` (Adam). ``s`` sequence, ``b`` micro-batch, ``n = s b``, ``h``
hidden, ``f`` FFN, ``q`` heads, ``g`` KV groups, ``d`` head_dim, ``L`` layers, ``V`` padded
vocabulary, ``t, p, r`` = tp, pp, dp, ``m`` micro-batches per step; lines: megatron-core 0.16.1.

Model state per parameter on this GPU: weights at dtype (params become views of DDP's
buffer, ``distributed/param_and_grad_buffer.py:797,831``); gradients, DDP's ``main_grad``,
fp32 with ``grad_reduce_in_fp32`` else the param dtype (``distributed_data_parallel.py:147``),
whole on every DP rank even with the distributed optimizer (``param_and_grad_buffer.py:803``);
fp32 main params (4 B) only for 16-bit params (``optimizer/optimizer.py:674``,
``distrib_optimizer.py:399``): fp32 params are stepped in place (``FP32Optimizer``,
``optimizer/__init__.py:465``; shard views, ``distrib_optimizer.py:420-423``); fp32 main grads
(4 B) only when 16-bit params keep 16-bit grads (``.float()``, ``distrib_optimizer.py:2419``,
``optimizer.py:759``), made by the step after backward freed the activations (the plan takes
the larger phase); Adam ``exp_avg`` + ``exp_avg_sq`` like the fp32 main param, 8 B
(``optimizer/__init__.py:396-397``). The distributed optimizer divides the last three by ``r``.
bf16 + fp32 grads: 2 + 4 + 4 + 8 = 18 B/param, 6 + 12/r distributed (as Megatron-LM's
``theoretical_memory_usage.py``); bf16 grads: 16 (ZeRO's 16 Psi, Rajbhandari et al. 2020).
A stage holds L/p layers with q, k, v, o, fc1, fc2 split by ``t`` and RMSNorm weights whole;
the first stage the embedding ``V h / t``; the last the final norm and output layer ``V h / t``
(with tied embeddings at p > 1 a copy: ``gpt_model.py:249``, ``language_module.py:213-224``).

Activations of one layer and micro-batch, bytes at 16 bit (what backward keeps):
    norm inputs (2) and outputs = QKV and fc1 inputs (2)        8 n h         (/t with SP)
    q, k, v kept by flash attention (RoPE keeps only cos/sin)   2 n d (q + 2g) / t
    attention output = linear_proj input                        2 n q d / t
    SwiGLU input [n, 2f/t] (fused_bias_swiglu.py:166) + fc2 input   6 n f / t
    without flash: softmax 2 q s n / t; with dropout + mask and output 3 q s n / t
    dropout masks after attention and MLP (dropout > 0 only)    2 n h, 1 byte (/t with SP)
Llama: ``n (8h + (4d(q + g) + 6f) / t)``. GPT terms (f = 4h, g = q, q d = h, dropout, no
flash) give exactly Korthikanti et al. 2022, "Reducing Activation Recomputation in Large
Transformer Models", Table 2: ``sbh(10 + 24/t + 5as/(ht))``, SP ``sbh(34/t + 5as/(ht))``.
SP divides all by ``t``: linear layers keep their sharded input and all-gather it again in
backward (``tensor_parallel/layers.py:465,519-528``). Flash/SDPA (assumed on GPU) keeps no
scores, so selective recompute (``core_attn``, ``transformer_config.py:1194``) saves nothing
more. Full recompute (``uniform``, ``transformer_block.py:532-542``) keeps a ``2 n h`` input
(/t with SP) per group of ``recompute_num_layers`` layers and rebuilds one group in backward.
fp32 doubles the float terms. Not counted (< 0.1 %): RMSNorm rstd, flash log-sum-exp. 1F1B:
stage i runs p - i - 1 warm-up forwards (``pipeline_parallel/schedules.py:2093-2096``), so the
first stage holds min(p, m) micro-batches and the last one, plus the final norm and output
inputs (4 n h, /t with SP), logits and loss; this assumes one schedule call per step. Frozen
models (teacher, reference) run under ``no_grad``: weights and one layer's working set.

Loss buffers (last stage) on logits ``[n, V/t]`` (whole sequence, also with SP). ``lm``:
megatron's vocab-parallel cross entropy copies to fp32 and keeps the exp
(``tensor_parallel/cross_entropy.py:28,187``): dtype + 4 B per logit. ``kd``: student and
teacher logits and the gradient buffer at dtype (``minitron.distill.losses``), plus
``KD_CHUNK_BUFFERS`` fp32 ``[chunk, V/t]`` (3.6 measured: benchmarks/results/kd_memory.json).

FLOPs per token (Chowdhery et al. 2022, PaLM, App. B): trained ``6N + 12 L q d s``, frozen
``2N + 4 L q d s``, N = matmul parameters (non-embedding + the ``V h`` output projection); a
trainable fraction phi: ``(4 + 2 phi) N``; full recompute adds the trained models' forward,
selective the attention ``4 L q d s``; causal masking is not discounted. Step time = FLOPs /
``flops_per_second`` (the whole cluster's sustained rate) x (1 + (p - 1)/m), the 1F1B bubble.

Not counted: CUDA context, NCCL buffers, allocator fragmentation, TE workspaces, the SP
all-gather buffer, packed-sequence masks ``[b, 1, s, s]``: keep 10-15 % of the GPU free.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

from minitron.errors import ConfigError
from minitron.models.arch import ModelArch
from minitron.models.params import count_params

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
RECOMPUTE = ("none", "selective", "full")
LOSS_KINDS = ("lm", "kd")
KD_CHUNK_BUFFERS = 4
GB = 1e9  # every figure printed in GB is 10^9 bytes


@dataclass
class ModelRole:
    """One model of a stage and how it is used."""

    arch: ModelArch
    """Its architecture."""
    trained: bool = True
    """False for a frozen model (teacher, alignment reference): weights only, forward only."""
    trainable_fraction: float = 1.0
    """Share of the parameters with gradients and optimizer state (LoRA, norm-only: < 1)."""

    def __post_init__(self):
        if not 0 < self.trainable_fraction <= 1:
            raise ConfigError("trainable_fraction", f"must be in (0, 1]: {self.trainable_fraction}")


@dataclass
class Precision:
    """Parameter dtype and megatron-core's DDP / optimizer options."""

    dtype: str = "bfloat16"
    """float32, bfloat16 or float16: weights and activations."""
    grad_reduce_in_fp32: bool = True
    """DDP keeps and reduces gradients in fp32 (``DistributedDataParallelConfig``)."""
    use_distributed_optimizer: bool = False
    """Shard fp32 main params and Adam state over the data-parallel ranks."""

    def __post_init__(self):
        if self.dtype not in DTYPE_BYTES:
            raise ConfigError("dtype", f"{self.dtype!r}: valid are {', '.join(DTYPE_BYTES)}")


@dataclass
class MemoryPlan:
    """Bytes per GPU of the most loaded pipeline stage, and the step's FLOPs and time."""

    parts: dict[str, int]
    """Bytes per GPU by part, e.g. ``student optimizer (Adam moments)``."""
    stage: str
    """The pipeline stage planned: ``only`` (pp = 1), ``first`` or ``last``."""
    layout: dict
    """tp, pp, dp, micro-batches and the options the plan was made with."""
    params_per_gpu: dict[str, int]
    """Parameters of each model on this GPU."""
    flops_per_step: float
    """FLOPs of one optimizer step over the whole cluster (recompute included)."""
    step_time_s: Optional[float] = None
    """flops_per_step / flops_per_second x pipeline bubble; None without a FLOP rate."""
    other_stage_bytes: dict[str, int] = field(default_factory=dict)
    """Totals of the stages not planned (pp > 1), for reference."""

    @property
    def total_bytes(self) -> int:
        """Sum of the parts."""
        return sum(self.parts.values())

    def largest(self) -> tuple[str, int]:
        """(name, bytes) of the largest part."""
        return max(self.parts.items(), key=lambda kv: kv[1])

    def to_dict(self) -> dict:
        """JSON-ready: parts and totals in bytes and GB (10^9)."""
        return {
            "layout": self.layout,
            "stage": self.stage,
            "parts": self.parts,
            "parts_gb": {k: round(v / GB, 3) for k, v in self.parts.items()},
            "total_bytes": self.total_bytes,
            "total_gb": round(self.total_bytes / GB, 3),
            "params_per_gpu": self.params_per_gpu,
            "flops_per_step": self.flops_per_step,
            "step_time_s": self.step_time_s,
            "other_stage_bytes": self.other_stage_bytes,
        }

    def format(self, gpu_memory_gb: Optional[float] = None) -> str:
        """A table in GB (10^9 bytes) with the layout and options on top."""
        lay = self.layout
        head = (
            f"tp={lay['tp']} pp={lay['pp']} dp={lay['dp']} ({lay['gpus']} GPUs), "
            f"{lay['dtype']}, grads {'fp32' if lay['grad_fp32'] else lay['dtype']}, "
            f"{'distributed' if lay['distributed_optimizer'] else 'replicated'} optimizer; "
            f"micro-batch {lay['micro_batch_size']} x {lay['seq_length']} tokens, "
            f"{lay['num_microbatches']} micro-batches/step; sequence_parallel="
            f"{lay['sequence_parallel']}, recompute={lay['recompute']}, loss={lay['loss_kind']}"
            f"; stage: {self.stage}"
        )
        width = max(len(k) for k in self.parts) + 2
        lines = [head] + [f"  {k:<{width}}{v / GB:>8.2f} GB" for k, v in self.parts.items()]
        total = f"  {'total':<{width}}{self.total_bytes / GB:>8.2f} GB"
        if gpu_memory_gb:
            fits = "fits" if self.total_bytes <= gpu_memory_gb * GB else "DOES NOT FIT"
            total += f"  of {gpu_memory_gb:g} GB: {fits}"
        lines.append(total)
        if self.step_time_s is not None:
            lines.append(f"  step: {self.flops_per_step:.3e} FLOPs, {self.step_time_s:.1f} s")
        return "\n".join(lines)


def check_layout(arch: ModelArch, tp: int, pp: int) -> None:
    """ConfigError naming the field when ``arch`` cannot be split ``tp`` x ``pp`` ways."""
    if tp < 1 or pp < 1:
        raise ConfigError("tp" if tp < 1 else "pp", "must be >= 1")
    for name in ("num_query_groups", "ffn_hidden_size", "padded_vocab_size"):
        if getattr(arch, name) % tp:
            raise ConfigError("tp", f"tp={tp} must divide {name}={getattr(arch, name)}")
    if arch.num_layers % pp:
        raise ConfigError("pp", f"pp={pp} must divide num_layers={arch.num_layers}")


def stage_params(arch: ModelArch, tp: int, pp: int, stage: str) -> int:
    """Parameters one GPU of ``stage`` (``only``, ``first`` or ``last``) holds."""
    c = count_params(arch)
    h, vh = arch.hidden_size, arch.padded_vocab_size * arch.hidden_size
    split = c["attention_per_layer"] + c["mlp_per_layer"]
    n = arch.num_layers // pp * (split // tp + 2 * h)  # + the two RMSNorm weights, whole
    if stage in ("only", "first"):
        n += vh // tp  # embedding
    if stage in ("only", "last"):
        n += h  # final norm
        if not (arch.tie_word_embeddings and stage == "only"):
            n += vh // tp  # output layer (a tied copy on the last stage when pp > 1)
    return n


def layer_activation_bytes(
    hidden: int,
    ffn: int,
    heads: int,
    groups: int,
    head_dim: int,
    seq: int,
    batch: int,
    tp: int = 1,
    sequence_parallel: bool = False,
    flash: bool = True,
    selective: bool = False,
    gated: bool = True,
    dropout: bool = False,
    act_bytes: int = 2,
) -> float:
    """Bytes one transformer layer keeps for backward for one micro-batch ``[s, b]`` on one
    GPU (the derivation table in the module docstring). ``gated=False, dropout=True,
    flash=False`` is the GPT layer of Korthikanti et al. 2022, Table 2."""
    n, k = seq * batch, act_bytes / 2  # k scales the 16-bit float terms; masks stay 1 byte
    replicated = k * 8 * n * hidden + (2 * n * hidden if dropout else 0)
    split = k * (
        2 * n * head_dim * (heads + 2 * groups)
        + 2 * n * heads * head_dim
        + (6 if gated else 4) * n * ffn
    )
    if not flash and not selective:
        split += (k * 2 + ((k * 2 + 1) if dropout else 0)) * heads * seq * n
    return (replicated / tp if sequence_parallel else replicated) + split / tp


def _trained_activations(
    a: ModelArch,
    stage: str,
    layers: int,
    in_flight: int,
    seq: int,
    batch: int,
    tp: int,
    sp: bool,
    recompute: str,
    rc_layers: int,
    flash: bool,
    act_bytes: int,
) -> float:
    """Stored activations of a trained model on one GPU of ``stage``."""
    residual = act_bytes * seq * batch * a.hidden_size / (tp if sp else 1)  # one [n, h]
    one = layer_activation_bytes(
        a.hidden_size,
        a.ffn_hidden_size,
        a.num_attention_heads,
        a.num_query_groups,
        a.head_dim,
        seq,
        batch,
        tp,
        sp,
        flash,
        recompute == "selective",
        act_bytes=act_bytes,
    )
    if recompute == "full":  # group inputs of every micro-batch + one group rebuilt
        body = in_flight * math.ceil(layers / rc_layers) * residual + min(rc_layers, layers) * one
    else:
        body = in_flight * layers * one
    if stage in ("only", "last"):
        body += 2 * residual  # final norm input + output-layer input
    return body


def _frozen_working_set(a: ModelArch, n: int, tp: int, sp: bool, act_bytes: int) -> float:
    """Peak live tensors of one layer's forward under no_grad: residual in and out plus the
    larger of attention (q, k, v, output) and the MLP (fc1 output + SwiGLU output)."""
    attn = a.head_dim * 2 * (a.num_attention_heads + a.num_query_groups)
    return (
        act_bytes
        * n
        * (2 * a.hidden_size / (tp if sp else 1) + max(attn, 3 * a.ffn_hidden_size) / tp)
    )


def _model_flops_per_token(
    a: ModelArch, seq: int, trained: bool, fraction: float, recompute: str
) -> float:
    c = count_params(a)
    n_mm = c["non_embedding"] + a.padded_vocab_size * a.hidden_size
    attn = 4 * a.num_layers * a.num_attention_heads * a.head_dim * seq  # forward
    if not trained:
        return 2 * n_mm + attn
    extra = {"none": 0, "selective": attn, "full": 2 * n_mm + attn}[recompute]
    return (4 + 2 * fraction) * n_mm + 3 * attn + extra


def plan(
    models: list[tuple[str, ModelRole]],
    *,
    tp: int = 1,
    pp: int = 1,
    dp: int = 1,
    precision: Optional[Precision] = None,
    micro_batch_size: int = 1,
    seq_length: int = 2048,
    global_batch_size: Optional[int] = None,
    sequence_parallel: bool = False,
    recompute: str = "none",
    recompute_num_layers: int = 1,
    loss_kind: str = "lm",
    loss_chunk_tokens: Optional[int] = None,
    flash_attention: bool = True,
    flops_per_second: Optional[float] = None,
) -> MemoryPlan:
    """Memory of one GPU of the most loaded pipeline stage, and the step's FLOPs and time.

    ``models``: (name, role) pairs; at least one trained. ``global_batch_size`` (default
    ``micro_batch_size x dp``) sets the micro-batches per step ``m``. ``loss_kind``: ``lm``
    (cross entropy: correction, SFT, preference) or ``kd`` (logit distillation: the frozen
    models' logits are held). ``loss_chunk_tokens``: the KD loss chunk (None: unchunked).
    ``sequence_parallel`` is ignored at tp = 1."""
    prec = precision or Precision()
    if not any(r.trained for _, r in models):
        raise ConfigError("models", "give at least one trained model")
    if recompute not in RECOMPUTE:
        raise ConfigError("recompute", f"{recompute!r}: valid are {', '.join(RECOMPUTE)}")
    if loss_kind not in LOSS_KINDS:
        raise ConfigError("loss_kind", f"{loss_kind!r}: valid are {', '.join(LOSS_KINDS)}")
    for name, v in dict(
        dp=dp,
        micro_batch_size=micro_batch_size,
        seq_length=seq_length,
        recompute_num_layers=recompute_num_layers,
    ).items():
        if v < 1:
            raise ConfigError(name, f"must be >= 1, got {v}")
    for _, r in models:
        check_layout(r.arch, tp, pp)
    gbs = global_batch_size or micro_batch_size * dp
    if gbs % (micro_batch_size * dp):
        raise ConfigError(
            "global_batch_size",
            f"{gbs} is not a multiple of micro_batch_size x dp = {micro_batch_size * dp}",
        )
    m = gbs // (micro_batch_size * dp)
    sp = sequence_parallel and tp > 1
    wb = ab = DTYPE_BYTES[prec.dtype]  # weights and activations share the dtype
    fp32 = prec.dtype == "float32"
    gb = 4 if (prec.grad_reduce_in_fp32 or fp32) else wb
    shard = dp if prec.use_distributed_optimizer else 1
    n = seq_length * micro_batch_size

    def stage_parts(stage: str) -> tuple[dict[str, int], dict[str, int]]:
        parts: dict[str, float] = {}
        at_step: dict[str, float] = {}
        counts: dict[str, int] = {}
        logit_sets = 0
        in_flight = min(pp, m) if stage == "first" else 1
        for name, r in models:
            a = r.arch
            count = counts[name] = stage_params(a, tp, pp, stage)
            parts[f"{name} weights"] = count * wb
            if r.trained:
                tn = count * r.trainable_fraction
                parts[f"{name} gradients"] = tn * gb
                if not fp32:
                    parts[f"{name} fp32 main params"] = tn * 4 / shard
                    if gb != 4:  # made by the step, after backward freed the activations
                        at_step[f"{name} fp32 main grads"] = tn * 4 / shard
                parts[f"{name} optimizer (Adam moments)"] = tn * 8 / shard
                parts[f"{name} activations"] = _trained_activations(
                    a,
                    stage,
                    a.num_layers // pp,
                    in_flight,
                    seq_length,
                    micro_batch_size,
                    tp,
                    sp,
                    recompute,
                    recompute_num_layers,
                    flash_attention,
                    ab,
                )
            else:
                parts[f"{name} activations"] = _frozen_working_set(a, n, tp, sp, ab)
            if stage in ("only", "last") and (r.trained or loss_kind == "kd"):
                logit_sets += 1
        if stage in ("only", "last"):
            vt = max(r.arch.padded_vocab_size for _, r in models) // tp
            if loss_kind == "lm":  # dtype logits + fp32 softmax, per trained model
                loss = logit_sets * n * vt * (ab + 4)
            else:  # every model's logits + the gradient buffer + fp32 chunk buffers
                chunk = min(loss_chunk_tokens or n, n)
                # one gradient buffer per student (a corrected teacher's loss is an LM loss)
                grads = max(1, sum(r.trained for name, r in models if name != "teacher"))
                loss = (logit_sets + grads) * n * vt * ab + KD_CHUNK_BUFFERS * chunk * vt * 4
            parts["loss buffers"] = loss
        passing = [k for k in parts if k.endswith("activations") or k == "loss buffers"]
        if sum(at_step.values()) > sum(parts[k] for k in passing):  # the step is the peak
            parts = {k: v for k, v in parts.items() if k not in passing} | at_step
        return {k: int(round(v)) for k, v in parts.items()}, counts

    stages = ["only"] if pp == 1 else ["first", "last"]
    planned = {st: stage_parts(st) for st in stages}
    worst = max(stages, key=lambda st: sum(planned[st][0].values()))
    parts, counts = planned[worst]
    tokens = gbs * seq_length
    flops = tokens * sum(
        _model_flops_per_token(r.arch, seq_length, r.trained, r.trainable_fraction, recompute)
        for _, r in models
    )
    step = None if not flops_per_second else flops / flops_per_second * (1 + (pp - 1) / m)
    layout = {
        "tp": tp,
        "pp": pp,
        "dp": dp,
        "gpus": tp * pp * dp,
        "dtype": prec.dtype,
        "grad_fp32": gb == 4,
        "distributed_optimizer": prec.use_distributed_optimizer,
        "micro_batch_size": micro_batch_size,
        "seq_length": seq_length,
        "global_batch_size": gbs,
        "num_microbatches": m,
        "sequence_parallel": sp,
        "recompute": recompute,
        "recompute_num_layers": recompute_num_layers,
        "loss_kind": loss_kind,
        "loss_chunk_tokens": loss_chunk_tokens,
        "flash_attention": flash_attention,
        "flops_per_second": flops_per_second,
    }
    others = {st: sum(planned[st][0].values()) for st in stages if st != worst}
    return MemoryPlan(
        parts=parts,
        stage=worst,
        layout=layout,
        params_per_gpu=counts,
        flops_per_step=float(flops),
        step_time_s=step,
        other_stage_bytes=others,
    )


ADVICE = (  # (part name ending, settings that shrink it)
    ("weights", "split the model further: more tp or pp"),
    ("gradients", "more tp or pp; grad_reduce_in_fp32=false halves it (bf16 gradients)"),
    ("fp32 main params", "use_distributed_optimizer=true (divides it by dp), or more dp, tp, pp"),
    ("fp32 main grads", "use_distributed_optimizer=true (divides it by dp), or more dp, tp, pp"),
    (
        "optimizer (Adam moments)",
        "use_distributed_optimizer=true (divides it by dp), or more dp, tp, pp",
    ),
    (
        "activations",
        "sequence_parallel=true (tp > 1), recompute=full (selective saves nothing "
        "with flash attention), a smaller micro_batch_size, or more tp or pp",
    ),
    (
        "loss buffers",
        "a smaller loss.chunk_size, a smaller micro_batch_size, or more tp (splits the vocabulary)",
    ),
)


def check(plan: MemoryPlan, gpu_memory_gb: float) -> None:
    """ConfigError(``gpu_memory_gb``) when the plan exceeds the budget (GB = 10^9 bytes),
    naming the largest part and the settings that would shrink it."""
    if plan.total_bytes <= gpu_memory_gb * GB:
        return
    name, size = plan.largest()
    lay, advice = plan.layout, next(a for end, a in ADVICE if name.endswith(end))
    raise ConfigError(
        "gpu_memory_gb",
        f"the plan needs {plan.total_bytes / GB:.1f} GB per GPU "
        f"({plan.stage} pipeline stage, tp={lay['tp']} pp={lay['pp']} "
        f"dp={lay['dp']}) but the GPU has {gpu_memory_gb:g} GB; the largest part "
        f"is '{name}' ({size / GB:.1f} GB): {advice}",
    )
