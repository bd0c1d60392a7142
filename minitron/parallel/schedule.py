"""Forward passes through a TP/PP-split model with megatron-core's pipeline schedule."""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import torch


def model_device(model) -> torch.device:
    return next(model.parameters()).device


def _forward(model, batch: dict, device, with_labels: bool):
    """One micro-batch through this stage: per-token cross entropy when ``with_labels``, else
    logits (last stage) or hidden states. A packed batch carries its block-diagonal
    ``attention_mask`` ``[b, 1, s, s]`` (True = masked); otherwise attention is causal."""
    mask = batch.get("attention_mask")
    labels = batch["labels"].to(device) if with_labels else None
    return model(
        batch["tokens"].to(device),
        position_ids=None,
        attention_mask=None if mask is None else mask.to(device),
        labels=labels,
    )


def pipeline_forward(
    model,
    batches: Sequence[dict],
    collect: Callable[[torch.Tensor, dict], Any],
    with_labels: bool = False,
) -> list | None:
    """Forward-only over every micro-batch in ``batches`` (all of one shape).

    ``collect(output, batch)`` runs on the last PP stage with the model output:
    vocab-parallel logits ``[b, s, v/tp]``, or with ``with_labels`` the per-token
    cross entropy ``[b, s]`` that megatron-core computes from ``batch["labels"]``
    without materialising ``[b, s, v]`` logits. Its results are returned there,
    in order; other stages return None.
    """
    from megatron.core import parallel_state as ps

    if not batches:
        return [] if ps.is_pipeline_last_stage() else None
    device = model_device(model)

    def step(data_iterator, m):
        batch = next(data_iterator)
        out = _forward(m, batch, device, with_labels)
        return out, lambda output, non_loss_data=True: collect(output, batch)

    with torch.no_grad():
        return _run_schedule(model, batches, step, forward_only=True, collect_non_loss_data=True)


def _run_schedule(model, batches: Sequence[dict], step, **kwargs) -> list | None:
    """megatron-core's pipeline schedule over ``batches``; the last stage's outputs, else None."""
    from megatron.core import parallel_state as ps
    from megatron.core.pipeline_parallel import get_forward_backward_func

    b, s = batches[0]["tokens"].shape
    adjust = getattr(model, "adjust_tensor_shapes", None)
    if adjust is not None and ps.get_pipeline_model_parallel_world_size() > 1:
        kwargs["adjust_tensor_shapes_fn"] = adjust
    results = get_forward_backward_func()(
        forward_step_func=step,
        data_iterator=iter(batches),
        model=[model],
        num_microbatches=len(batches),
        seq_length=s,
        micro_batch_size=b,
        **kwargs,
    )
    return list(results) if ps.is_pipeline_last_stage() else None


def from_last_stage(value: Any) -> Any:
    """Send a Python object computed on the last PP stage to every rank of its PP group."""
    from megatron.core import parallel_state as ps

    from minitron.parallel.collectives import broadcast_object

    group = ps.get_pipeline_model_parallel_group()
    src = ps.get_pipeline_model_parallel_last_rank()
    return broadcast_object(value, src=src, group=group)


def pipeline_train_step(
    model,
    batches: Sequence[dict],
    loss_fn,
    with_labels: bool = False,
    forward: Optional[Callable] = None,
) -> list | None:
    """Forward and backward over all of one optimizer step's micro-batches (one shape) in
    one call of megatron-core's schedule: with PP, a full 1F1B pipeline.

    ``loss_fn(output, batch) -> (loss_sum, count, metrics)`` runs on the last PP stage:
    the *sum* of the loss over its ``count`` tokens (or pairs), and a dict of metric sums
    over the same units. The gradients of the sums accumulate in the model's buffers; the
    engine divides them by the step's global count (``Engine.finalize``), so a step's
    gradient does not depend on how it is split into micro-batches or ranks. ``forward(m,
    batch)`` replaces the plain model call (a :class:`~minitron.parallel.coupled.Coupled`
    pair). Returns the metric dicts (each with its ``count``) on the last stage, else None.
    """
    device = model_device(model)

    def step(data_iterator, m):
        batch = next(data_iterator)
        out = forward(m, batch) if forward is not None else _forward(m, batch, device, with_labels)

        def loss_func(output):
            loss, count, metrics = loss_fn(output, batch)
            count = torch.as_tensor(count).detach().to(torch.int)
            # copies: without per-token loss (a model outside the engine) the schedule divides
            # the loss in place, and a metric may be that very tensor
            metrics = {k: torch.as_tensor(v).detach().clone() for k, v in metrics.items()}
            return loss, count, dict(metrics, count=count.double())

        return out, loss_func

    return _run_schedule(model, batches, step, forward_only=False)


def reduce_metrics(per_micro: Optional[list[dict]]) -> dict:
    """Metric sums of a step's micro-batches (last stage) -> their means over the step's
    global ``count``: summed over micro-batches and data-parallel ranks, then sent to every
    rank of the pipeline group."""
    from megatron.core import parallel_state as ps

    from minitron.parallel.collectives import all_reduce_sum

    out = None
    if per_micro is not None:
        keys = sorted(per_micro[0])
        dev = (
            torch.device("cuda", torch.cuda.current_device())
            if torch.cuda.is_available()
            else torch.device("cpu")
        )
        sums = torch.stack(
            [sum(m[k].detach().double().reshape(()).to(dev) for m in per_micro) for k in keys]
        )
        sums = all_reduce_sum(sums, ps.get_data_parallel_group()).cpu()
        count = float(sums[keys.index("count")].clamp(min=1))
        out = {k: float(v) / count for k, v in zip(keys, sums) if k != "count"}
    return from_last_stage(out)
