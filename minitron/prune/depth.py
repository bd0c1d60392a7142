"""Choose which layers depth pruning drops.

Criteria (the paper's section on layer importance, plus the cosine baseline):

- ``task``: a downstream task's accuracy with the candidate dropped (Winogrande by
  default; the paper's choice) - higher is better;
- ``lm_loss``: LM loss on held-out text with the candidate dropped - lower is better;
- ``block_influence``: ``1 - cos(input, output)`` of the candidate, from the score
  file (ShortGPT's Block Influence, what ModelOpt uses) - lower is dropped first.

Candidates are every contiguous block of ``k`` layers (``contiguous: true``, the
paper's recommendation), or, for non-contiguous selection, each single layer
scored on its own, the ``k`` least important dropped together. Every candidate's
score is returned for the record. Task and loss candidates are evaluated through
the evaluator's layer-skip hook: no weights are copied.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional

import torch

from minitron.choices import DEPTH_CRITERIA as CRITERIA


def contiguous_blocks(num_layers: int, k: int) -> list[list[int]]:
    if not 0 < k < num_layers:
        raise ValueError(f"cannot drop {k} of {num_layers} layers")
    return [list(range(s, s + k)) for s in range(num_layers - k + 1)]


def search(
    num_layers: int,
    k: int,
    criterion: str,
    contiguous: bool,
    evaluate: Optional[Callable[[list[int]], float]] = None,
    influence: Optional[dict[str, torch.Tensor]] = None,
) -> dict:
    """The layers to drop and every candidate's score.

    ``evaluate(layers)`` returns the metric with ``layers`` skipped (``task`` or
    ``lm_loss``); ``influence`` holds the score file's ``layers.block_influence`` and
    ``blocks.block_influence``.
    """
    if criterion not in CRITERIA:
        raise ValueError(f"criterion {criterion!r}: valid are {CRITERIA}")
    if criterion == "block_influence" and influence is None:
        raise ValueError("criterion block_influence needs the score file's Block Influence")
    if criterion != "block_influence" and evaluate is None:
        raise ValueError(f"criterion {criterion!r} needs an evaluate function")
    higher_better = criterion == "task"
    candidates = (
        contiguous_blocks(num_layers, k) if contiguous else [[i] for i in range(num_layers)]
    )
    rows: list[dict[str, Any]] = []
    for layers in candidates:
        if criterion == "block_influence":
            assert influence is not None
            value = (
                float(influence["blocks.block_influence"][layers[0], layers[-1]])
                if contiguous
                else float(influence["layers.block_influence"][layers[0]])
            )
            if math.isnan(value):
                raise ValueError(
                    f"no Block Influence for layers {layers[0]}-{layers[-1]} in the "
                    "scores: rerun `minitron score` with block_scores=true at pp=1"
                )
        else:
            assert evaluate is not None
            value = float(evaluate(layers))
        rows.append({"layers": layers, criterion: value})
    # the least important candidate: highest accuracy / lowest loss / lowest influence
    order = sorted(
        range(len(rows)),
        key=lambda i: (-rows[i][criterion] if higher_better else rows[i][criterion], i),
    )
    if contiguous:
        drop = rows[order[0]]["layers"]
    else:
        drop = sorted(rows[i]["layers"][0] for i in order[:k])
    return {
        "criterion": criterion,
        "contiguous": contiguous,
        "drop": drop,
        "keep": [i for i in range(num_layers) if i not in drop],
        "candidates": rows,
    }
