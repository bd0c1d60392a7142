"""The candidate architectures of an architecture search: every combination of the allowed
sizes of each axis whose parameter count falls in the budget (pure arithmetic, no model).

Each axis (``hidden_size``, ``ffn_hidden_size``, ``num_attention_heads``, ``num_layers``)
takes either explicit choices or every multiple of its step between the teacher's size
shrunk by at most ``max_shrink`` and the teacher's size. Heads stay whole KV groups (the
query groups are kept, as ModelOpt keeps them), the layout must split the candidate
(``check_layout``), and with ``hf_compatible`` the hidden size is a multiple of the heads
(transformers refuses a Llama config otherwise). The budget is a ceiling: a candidate has
at most ``budget`` parameters and at least ``(1 - tolerance) * budget``.

The order is fixed (largest first, then by layers, hidden, heads, MLP), so candidate ``i``
is the same on every machine: ``--shard i/n`` relies on it.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Optional, Sequence

from minitron.models.arch import ModelArch
from minitron.models.params import count_params

AXES = ("hidden_size", "ffn_hidden_size", "num_attention_heads", "num_layers")


@dataclasses.dataclass(frozen=True)
class Axis:
    """The sizes one axis may take: ``choices`` if given, else multiples of ``step`` in
    ``[ceil(current * (1 - max_shrink)), current]`` (the current size always included)."""

    choices: Optional[tuple[int, ...]] = None
    step: int = 1
    max_shrink: float = 0.5

    def values(self, current: int) -> list[int]:
        if self.choices is not None:
            return sorted({v for v in self.choices if 0 < v <= current}, reverse=True)
        low = math.ceil(current * (1 - self.max_shrink) - 1e-9)
        first = max(self.step, math.ceil(low / self.step) * self.step)
        return sorted(set(range(first, current + 1, self.step)) | {current}, reverse=True)


@dataclasses.dataclass(frozen=True)
class Candidate:
    arch: ModelArch
    params: int  # the budgeted count (total or non-embedding)

    @property
    def sizes(self) -> dict[str, int]:
        return {a: getattr(self.arch, a) for a in AXES}

    @property
    def name(self) -> str:
        s = self.sizes
        return (
            f"h{s['hidden_size']}-f{s['ffn_hidden_size']}-a{s['num_attention_heads']}"
            f"-l{s['num_layers']}"
        )

    def target(self, teacher: ModelArch) -> dict[str, int]:
        """The sizes that differ from the teacher's (a pruning target)."""
        return {a: v for a, v in self.sizes.items() if getattr(teacher, a) != v}


def head_values(teacher: ModelArch, axis: Axis) -> list[int]:
    """Whole KV groups: multiples of num_query_groups (``step`` is ignored), at least the
    teacher's heads shrunk by ``max_shrink``, at most the teacher's heads."""
    g, current = teacher.num_query_groups, teacher.num_attention_heads
    if axis.choices is not None:
        return [v for v in axis.values(current) if v % g == 0]
    low = math.ceil(current * (1 - axis.max_shrink) - 1e-9)
    return sorted(
        {k * g for k in range(1, current // g + 1) if k * g >= low} | {current}, reverse=True
    )


def fits_layout(arch: ModelArch, tp: int, pp: int, hf_compatible: bool) -> bool:
    from minitron.errors import ConfigError
    from minitron.models.builder import check_layout

    if hf_compatible and arch.hidden_size % arch.num_attention_heads:
        return False
    if arch.num_attention_heads % tp:
        return False
    try:
        check_layout(arch, tp, pp)
    except ConfigError:
        return False
    return True


def budgeted(arch: ModelArch, kind: str) -> int:
    return count_params(arch)["total" if kind == "params" else "non_embedding"]


def enumerate_candidates(
    teacher: ModelArch,
    axes: dict[str, Axis],
    budget: int,
    kind: str = "non_embedding_params",
    tolerance: float = 0.05,
    tp: int = 1,
    pp: int = 1,
    hf_compatible: bool = True,
    exclude_teacher: bool = True,
) -> list[Candidate]:
    """Every candidate in ``[(1 - tolerance) * budget, budget]`` parameters (``kind``:
    ``params`` for the total, ``non_embedding_params`` for the paper's Table 3 count)."""
    values: dict[str, Sequence[int]] = {
        a: head_values(teacher, axes[a])
        if a == "num_attention_heads"
        else axes[a].values(getattr(teacher, a))
        for a in AXES
    }
    out = []
    for combo in itertools.product(*(values[a] for a in AXES)):
        sizes = dict(zip(AXES, combo))
        arch = teacher.replace(**sizes)
        if exclude_teacher and arch == teacher:
            continue
        n = budgeted(arch, kind)
        if not (1 - tolerance) * budget <= n <= budget:
            continue
        if fits_layout(arch, tp, pp, hf_compatible):
            out.append(Candidate(arch, n))
    order = ("num_layers", "hidden_size", "num_attention_heads", "ffn_hidden_size")
    out.sort(key=lambda c: (-c.params, *(-c.sizes[a] for a in order)))
    return out


def shard(candidates: list, index: int, count: int) -> list:
    """Every ``count``-th candidate from ``index`` (``--shard index/count``)."""
    return candidates[index::count]
