"""Batched log-likelihood of continuations given contexts, on a model at any TP/PP.

A request is ``(context_ids, continuation_ids)``; its score is
``sum_t log p(continuation_t | context, continuation_<t)``. Requests are sorted by
length and packed into right-padded batches (causal attention: padding after a
sequence never reaches it); one forward per batch scores every request in it.

Two paths: by default megatron-core computes the per-token cross entropy from
labels (vocab-parallel, no ``[b, s, vocab]`` logits materialised); with
``greedy=True`` the vocab-parallel logits also tell whether each continuation is
the argmax (lm-eval's ``is_greedy``).
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Protocol, Sequence

import torch

from minitron.parallel.schedule import from_last_stage, pipeline_forward
from minitron.parallel.vocab import target_logprobs


class Progress(Protocol):
    """What a progress bar offers the scorer (a tqdm bar has it)."""

    def update(self, n: int) -> object: ...


@dataclasses.dataclass(frozen=True)
class Request:
    context: tuple[int, ...]
    continuation: tuple[int, ...]


def encode_pair(tok, context: str, continuation: str, empty_context_id: int = 0) -> Request:
    """Token ids of a (context, continuation) pair, split as lm-eval does: trailing
    spaces of the context move to the continuation, the whole string and the
    context are encoded, and the continuation is the tokens past the context. An
    empty context becomes ``[empty_context_id]`` (a document separator)."""
    n_space = len(context) - len(context.rstrip(" "))
    if n_space:
        context, continuation = context[:-n_space], context[-n_space:] + continuation
    whole = tok(context + continuation, add_special_tokens=False)["input_ids"]
    ctx = tok(context, add_special_tokens=False)["input_ids"] if context else []
    cont = whole[len(ctx) :]
    return Request(tuple(ctx) if ctx else (empty_context_id,), tuple(cont))


def _batches(requests: Sequence[Request], batch_size: int, max_length: int, pad_id: int):
    """(original indices, tokens, labels, mask) batches, longest first."""
    seqs = []
    for i, r in enumerate(requests):
        if not r.continuation:
            raise ValueError(f"request {i} has an empty continuation")
        full = (r.context + r.continuation)[-(max_length + 1) :]
        if len(r.continuation) > max_length:
            raise ValueError(
                f"request {i}: continuation of {len(r.continuation)} tokens exceeds "
                f"max_length={max_length}"
            )
        seqs.append((i, full, len(r.continuation)))
    seqs.sort(key=lambda x: -len(x[1]))
    for start in range(0, len(seqs), batch_size):
        chunk = seqs[start : start + batch_size]
        width = len(chunk[0][1]) - 1
        tokens = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        labels = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(chunk), width))
        for row, (_, full, n_cont) in enumerate(chunk):
            n = len(full) - 1
            tokens[row, :n] = torch.tensor(full[:-1])
            labels[row, :n] = torch.tensor(full[1:])
            mask[row, n - n_cont : n] = 1.0
        yield [c[0] for c in chunk], {"tokens": tokens, "labels": labels, "loss_mask": mask}


def score_requests(
    model,
    requests: Sequence[Request],
    vocab_size: int,
    *,
    batch_size: int = 32,
    max_length: int = 2048,
    pad_id: int = 0,
    greedy: bool = False,
    progress: Optional[Progress] = None,
) -> list[tuple[float, bool]]:
    """``(log-likelihood, is_greedy)`` per request, in order, on every rank.

    ``is_greedy`` is only computed with ``greedy=True`` (else False). ``progress``:
    an object with ``update(n)`` (a tqdm bar), advanced by requests scored.
    """
    from megatron.core import parallel_state as ps

    model.eval()
    tp_group = ps.get_tensor_model_parallel_group()

    def collect(output, batch):
        mask = batch["loss_mask"].to(output.device)
        if greedy:  # output: vocab-parallel logits [b, s, v/tp]
            logp, is_max = target_logprobs(
                output, batch["labels"].to(output.device), vocab_size, tp_group
            )
            ll = (logp * mask).sum(1)
            all_max = (is_max | (mask == 0)).all(1)
        else:  # output: per-token cross entropy [b, s]
            ll = -(output.float() * mask).sum(1)
            all_max = torch.zeros_like(ll, dtype=torch.bool)
        return ll.double().cpu(), all_max.cpu()

    results: list[Optional[tuple[float, bool]]] = [None] * len(requests)
    is_last = ps.is_pipeline_last_stage()
    for index, batch in _batches(requests, batch_size, max_length, pad_id):
        out = pipeline_forward(model, [batch], collect, with_labels=not greedy)
        if is_last:
            assert out is not None  # pipeline_forward returns the results on the last stage
            ll, gr = out[0]
            for j, i in enumerate(index):
                results[i] = (float(ll[j]), bool(gr[j]))
        if progress is not None:
            progress.update(len(index))
    return from_last_stage(results if is_last else None)
