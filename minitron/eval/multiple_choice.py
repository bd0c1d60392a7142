"""Multiple-choice accuracy by log-likelihood: every choice of every item in batched forwards.

For each item, each choice i is scored as ``log p(continuation_i | fewshot + context_i)``;
the prediction is the argmax (``acc``) and, for ``acc_norm``, the argmax of the
log-likelihood divided by the choice's length in characters (lm-eval's
definition). Winogrande has one continuation for both choices, so only ``acc``
is reported for it.
"""

from __future__ import annotations

import math
from typing import Optional

from minitron.eval.scoring import Progress, Request, encode_pair, score_requests
from minitron.eval.tasks import MCItem


def build_requests(
    items: list[MCItem], prefixes: list[str], tok, empty_context_id: int
) -> tuple[list[Request], list[tuple[int, int]]]:
    """One request per (item, choice); returns the requests and their (item, choice) owners."""
    requests, owners = [], []
    for i, (item, prefix) in enumerate(zip(items, prefixes)):
        for c in range(len(item.contexts)):
            requests.append(
                encode_pair(tok, prefix + item.contexts[c], item.continuations[c], empty_context_id)
            )
            owners.append((i, c))
    return requests, owners


def stderr_of_mean(p: float, n: int) -> float:
    """Sample standard error of a mean of n 0/1 outcomes (what lm-eval reports)."""
    return math.sqrt(p * (1 - p) / (n - 1)) if n > 1 else float("nan")


def aggregate(items: list[MCItem], lls: list[list[float]]) -> dict:
    """acc (and acc_norm when continuations differ), with standard errors and predictions."""
    n = len(items)
    preds = [max(range(len(ll)), key=ll.__getitem__) for ll in lls]
    correct = [int(p == it.gold) for p, it in zip(preds, items)]
    acc = sum(correct) / n
    out = {
        "acc": acc,
        "acc_stderr": stderr_of_mean(acc, n),
        "n": n,
        "predictions": preds,
        "loglikelihoods": lls,
    }
    if any(len(set(it.continuations)) > 1 for it in items):
        norm = [
            max(range(len(ll)), key=lambda c: ll[c] / max(len(it.choice_texts[c]), 1))
            for ll, it in zip(lls, items)
        ]
        acc_norm = sum(int(p == it.gold) for p, it in zip(norm, items)) / n
        out.update(acc_norm=acc_norm, acc_norm_stderr=stderr_of_mean(acc_norm, n))
    return out


def evaluate_requests(
    model,
    vocab_size: int,
    items: list[MCItem],
    requests: list[Request],
    owners: list[tuple[int, int]],
    *,
    batch_size: int = 32,
    max_length: int = 2048,
    pad_id: int = 0,
    progress: Optional[Progress] = None,
) -> dict:
    """Score prepared requests (collective over the model's ranks) and aggregate per item."""
    scores = score_requests(
        model,
        requests,
        vocab_size,
        batch_size=batch_size,
        max_length=max_length,
        pad_id=pad_id,
        progress=progress,
    )
    lls: list[list[float]] = [[0.0] * len(it.contexts) for it in items]
    for (i, c), (ll, _) in zip(owners, scores):
        lls[i][c] = ll
    return aggregate(items, lls)
