"""megatron-core's training engine for one trained model: its ``DistributedDataParallel``
wrapper, the optimizer from ``get_megatron_optimizer``, gradient finalisation, a step
that skips non-finite gradients, and the optimizer's sharded checkpoint.

What megatron-core does here, and we do not redo:
- gradients accumulate in contiguous fp32 buckets (``grad_reduce_in_fp32``); the
  data-parallel reduction is one bucketed all-reduce, or a reduce-scatter with the
  distributed optimizer, overlapped with the backward on GPU;
- bf16/fp16 models are stepped through fp32 main weights and fp32 Adam moments
  (fp16 with megatron-core's dynamic loss scaler); the distributed optimizer shards
  both over the data-parallel ranks;
- ``finalize_model_grads``: the data-parallel reduction, sequence-parallel norm
  gradients over TP, tied embeddings across pipeline stages, and the division by the
  global number of loss tokens (``calculate_per_token_loss``);
- the gradient norm and clipping over TP x PP, counting replicated tensors once.

Frozen models (a teacher, a reference) never come here: no buffers, no optimizer state.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math

import torch

SHARDING = {"distrib_optim_sharding_type": "fully_reshardable"}


@dataclasses.dataclass(frozen=True)
class EngineOptions:
    """Precision and data-parallel options of a trained model."""

    dtype: torch.dtype = torch.float32
    use_distributed_optimizer: bool = False
    grad_reduce_in_fp32: bool = True
    overlap_grad_reduce: bool = False

    @classmethod
    def of(cls, cfg, dtype: torch.dtype, dp: int, distributed=None) -> EngineOptions:
        """From a config with the TrainingBase fields, at data-parallel size ``dp``;
        ``distributed`` overrides ``cfg.use_distributed_optimizer``; where both are None the
        distributed optimizer is on when dp > 1."""
        if distributed is None:
            distributed = cfg.use_distributed_optimizer
        return cls(
            dtype=dtype,
            use_distributed_optimizer=dp > 1 if distributed is None else bool(distributed),
            grad_reduce_in_fp32=cfg.grad_reduce_in_fp32,
            # gloo on CPU: the reduction runs once after the backward instead
            overlap_grad_reduce=cfg.overlap_grad_reduce and torch.cuda.is_available(),
        )


class Engine:
    """A model under training: ``ddp`` (megatron-core DDP around ``model``) and ``optimizer``.

    ``optim`` is minitron's ``OptimConfig`` (lr, betas, eps, weight decay, clip_grad).
    Only parameters with ``requires_grad`` get gradient buffers and optimizer state (LoRA
    and norm-only correction freeze the rest before this is built).
    """

    def __init__(self, model, optim, options: EngineOptions):
        from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig
        from megatron.core.optimizer import OptimizerConfig, get_megatron_optimizer

        self.model, self.options = model, options
        config = model.config
        # each loss function returns (sum over its tokens, token count, metrics); the gradient
        # is divided by the step's global token count in finalize_model_grads
        config.calculate_per_token_loss = True
        self.ddp = DistributedDataParallel(
            config,
            DistributedDataParallelConfig(
                grad_reduce_in_fp32=options.grad_reduce_in_fp32,
                overlap_grad_reduce=options.overlap_grad_reduce,
                use_distributed_optimizer=options.use_distributed_optimizer,
            ),
            model,
        )
        if options.overlap_grad_reduce:
            config.no_sync_func = self.ddp.no_sync
        dtype = options.dtype
        self.optimizer = get_megatron_optimizer(
            OptimizerConfig(
                optimizer="adam",
                lr=optim.lr,
                min_lr=optim.min_lr,
                weight_decay=optim.weight_decay,
                adam_beta1=optim.beta1,
                adam_beta2=optim.beta2,
                adam_eps=optim.eps,
                clip_grad=optim.clip_grad,
                bf16=dtype == torch.bfloat16,
                fp16=dtype == torch.float16,
                params_dtype=dtype,
                use_distributed_optimizer=options.use_distributed_optimizer,
            ),
            [self.ddp],
        )
        if dtype == torch.float16:  # megatron-core's dynamic loss scaler scales every backward
            config.grad_scale_func = self.optimizer.scale_loss
        self.weight_decay = optim.weight_decay

    def zero_grad(self) -> None:
        self.ddp.zero_grad_buffer()
        self.optimizer.zero_grad()

    def set_lr(self, lr: float) -> None:
        """This step's learning rate; weight decay only where megatron-core's groups allow it
        (``wd_mult`` is 0 for norms and biases; without megatron-core's LR scheduler the
        groups' multipliers must be applied by hand)."""
        for g in self.optimizer.param_groups:
            g["lr"] = lr * g.get("lr_mult", 1.0)
            g["weight_decay"] = self.weight_decay * g.get("wd_mult", 1.0)

    def finalize(self, count: int) -> None:
        """Reduce the accumulated gradients over data-parallel ranks (and tied embeddings,
        sequence-parallel norms) and divide them by the global loss count: ``count`` is this
        rank's number of loss tokens (or pairs) in the step, summed over its micro-batches."""
        from megatron.core.distributed import finalize_model_grads

        n = torch.tensor(count, dtype=torch.int, device=_device(self.model))
        finalize_model_grads([self.ddp], n)

    def step(self) -> tuple[bool, float]:
        """(stepped, gradient norm). A non-finite norm, or an fp16 overflow, skips the update:
        weights and optimizer state stay as they were. (``MegatronOptimizer.step`` skips only
        on fp16 overflow; bf16 and fp32 would clip and step on NaN, hence its parts here.)"""
        from megatron.core.optimizer.clip_grads import clip_grad_by_total_norm_fp32

        opt = self.optimizer
        if opt.prepare_grads():  # fp16 overflow: the scaler has backed off
            return False, float("inf")
        norm = float(opt.get_grad_norm())
        if not math.isfinite(norm):
            return False, norm
        for inner in opt.chained_optimizers:
            params = inner.get_parameters()
            if params and inner.config.clip_grad > 0:
                clip_grad_by_total_norm_fp32(
                    params, max_norm=inner.config.clip_grad, total_norm=norm
                )
        return bool(opt.step_with_ready_grads()), norm

    # ---- checkpoints: megatron-core dist_checkpointing, reshardable over data parallelism
    def sharded_state_dict(self, is_loading: bool) -> dict:
        """The optimizer's reshardable state (fp32 main weights, Adam moments, steps), for
        ``dist_checkpointing``; ``is_loading`` allocates it first so its entries exist."""
        if is_loading:  # allocate Adam's state so that its sharded entries exist
            _init_optimizer_state(self.optimizer)
        return self.optimizer.sharded_state_dict(
            self.model.sharded_state_dict(), is_loading, metadata=SHARDING
        )

    def load_optimizer_state(self, state: dict) -> None:
        """Load what ``dist_load`` read into ``sharded_state_dict(True)`` (the file I/O is the
        caller's: ``minitron/train/state.py``)."""
        with _torch_adam_loading(self.optimizer):
            self.optimizer.load_state_dict(state)


def _is_torch_optimizer(opt) -> bool:
    return type(opt).__module__.startswith("torch.")


@contextlib.contextmanager
def _torch_adam_loading(optimizer):
    """Load megatron-core's reshardable distributed-optimizer state into torch's Adam (used
    where neither Transformer Engine nor apex is installed: the CPU case). megatron-core
    (0.16, ``distrib_optimizer.py``) copies every key of torch's per-parameter state from the
    checkpoint, including ``step``, which the reshardable format does not hold (KeyError), and
    does so in place on leaves that require grad; and it hands every parameter one shared
    ``step`` tensor, which torch's Adam then advances once per parameter per step. Here the
    copy skips ``step`` and runs without autograd, and each parameter gets its own step."""
    from megatron.core.optimizer.distrib_optimizer import DistributedOptimizer

    patched = [
        o
        for o in optimizer.chained_optimizers
        if isinstance(o, DistributedOptimizer) and _is_torch_optimizer(o.optimizer)
    ]
    for o in patched:

        def copy_states(model_param, tensors, o=o, copy=o._set_main_param_and_optimizer_states):
            group, order = o.model_param_group_index_map[model_param]
            state = o.optimizer.state[o.optimizer.param_groups[group]["params"][order]]
            step = state.pop("step", None)
            try:
                with torch.no_grad():
                    copy(model_param, tensors)
            finally:
                if step is not None:
                    state["step"] = step

        o._set_main_param_and_optimizer_states = copy_states
    try:
        yield
    finally:
        for o in patched:
            del o._set_main_param_and_optimizer_states
    for o in optimizer.chained_optimizers:
        if _is_torch_optimizer(o.optimizer):
            for st in o.optimizer.state.values():
                if torch.is_tensor(st.get("step")):
                    st["step"] = st["step"].clone()


def _device(model) -> torch.device:
    return next(model.parameters()).device


def _init_optimizer_state(optimizer) -> None:
    """Zero Adam moments for every parameter that has none yet (megatron-core's own
    ``init_state_fn``; a fresh torch Adam has no state before its first step). torch's Adam
    (used where neither Transformer Engine nor apex is installed: the CPU case) also keeps a
    ``step`` per parameter, which megatron-core's ``init_state_fn`` does not create and the
    distributed optimizer's ``state_dict`` reads: each parameter gets its own."""
    for inner in optimizer.chained_optimizers:
        fn = getattr(inner, "init_state_fn", None)
        if fn is None or inner.optimizer.state:
            continue
        fn(inner.optimizer, inner.config)
        if _is_torch_optimizer(inner.optimizer):
            for st in inner.optimizer.state.values():
                st.setdefault("step", torch.zeros((), dtype=torch.float32))
