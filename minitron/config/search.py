"""Config of ``minitron search``: candidate architectures under a parameter budget.

    minitron search --model ckpt/teacher --scores runs/x/scores --out runs/x/search \
        data.paths=[runs/x/data] budget.fraction=0.5 --dry-run
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

from minitron.config.checks import choice, number, positive
from minitron.config.loader import REQUIRED, doc
from minitron.config.owned import RUN_TRAINING, TRAINED
from minitron.config.prune import WIDTH_METHODS, DepthConfig
from minitron.config.schema import DataConfig, MCTaskConfig
from minitron.config.sections import section
from minitron.config.train import DistillConfig, TrainingBase
from minitron.errors import ConfigError


@dataclass
class AxisConfig:
    """The sizes one axis may take: ``choices``, or every multiple of ``step`` from the
    teacher's size shrunk by ``max_shrink`` up to the teacher's size (always included)."""

    choices: Optional[List[int]] = doc(None, "Explicit sizes (each at most the teacher's).")
    step: int = doc(1, "Sizes are multiples of this (ignored for heads: whole KV groups).")
    max_shrink: float = doc(0.5, "At most this fraction of the teacher's size is removed.")

    def validate(self):
        positive(self.step, "step")
        number(self.max_shrink, "max_shrink", ge=0.0, lt=1.0)
        if self.choices is not None and (not self.choices or min(self.choices) < 1):
            raise ConfigError("choices", f"{self.choices}: give sizes >= 1, or null")


@dataclass
class SpaceConfig:
    """The search space (ModelOpt's defaults: hidden by 64, MLP by 256, layers by 2)."""

    hidden_size: AxisConfig = doc(
        factory=lambda: AxisConfig(step=64, max_shrink=0.4), text="Embedding channels."
    )
    ffn_hidden_size: AxisConfig = doc(
        factory=lambda: AxisConfig(step=256, max_shrink=0.4), text="MLP neurons per layer."
    )
    num_attention_heads: AxisConfig = doc(
        factory=lambda: AxisConfig(max_shrink=0.4),
        text="Query heads (multiples of the KV groups, which are kept).",
    )
    num_layers: AxisConfig = doc(
        factory=lambda: AxisConfig(step=2, max_shrink=0.5), text="Transformer layers."
    )
    hf_compatible: bool = doc(
        True,
        "Only hidden sizes that are multiples of the heads (transformers refuses other Llama "
        "configs, so their HF export would not load).",
    )


@dataclass
class BudgetConfig:
    """The parameter budget: a ceiling, with candidates down to (1 - tolerance) of it."""

    params: Optional[int] = doc(None, "Total parameters (embeddings included).")
    non_embedding_params: Optional[int] = doc(
        None, "Non-embedding parameters (the paper's Table 3 count)."
    )
    fraction: Optional[float] = doc(
        None, "Non-embedding parameters as a fraction of the teacher's (e.g. 0.5)."
    )
    tolerance: float = doc(0.05, "Candidates have at least (1 - tolerance) x the budget.")

    def validate(self):
        given = [k for k in ("params", "non_embedding_params", "fraction") if getattr(self, k)]
        if len(given) != 1:
            raise ConfigError(
                "params",
                "give exactly one of params, non_embedding_params or fraction "
                f"(got {given or 'none'})",
            )
        if self.params is not None:
            positive(self.params, "params")
        if self.non_embedding_params is not None:
            positive(self.non_embedding_params, "non_embedding_params")
        if self.fraction is not None:
            number(self.fraction, "fraction", gt=0.0, lt=1.0)
        number(self.tolerance, "tolerance", gt=0.0, lt=1.0)

    def resolve(self, teacher_counts: dict) -> tuple[int, str]:
        """(budget, kind) with kind ``params`` or ``non_embedding_params``."""
        if self.params is not None:
            return self.params, "params"
        if self.non_embedding_params is not None:
            return self.non_embedding_params, "non_embedding_params"
        assert self.fraction is not None
        return int(self.fraction * teacher_counts["non_embedding"]), "non_embedding_params"


@section(
    DistillConfig,
    owned=RUN_TRAINING
    | {
        "student": "unused (candidates are distilled together)",
        "students": "the candidates of a group",
        "names": "the candidates' names",
        "teacher": "the search's model",
        "out": "<out>/distill/<group>",
        "data": "the search's data",
    },
    placeholders=TRAINED | {"student": "<candidate>", "teacher": "<teacher>"},
)
class SearchDistillConfig(DistillConfig):
    """The short distillation of every kept candidate (``minitron distill``, several students
    from one teacher forward). ``validation.loss`` unset: the held-out loss the ranking uses."""

    group_size: int = doc(
        4,
        "Candidates distilled together in one run (one teacher forward per micro-batch for "
        "all of them); bounds the memory of a group.",
    )

    def validate_own(self):
        positive(self.group_size, "group_size")


@dataclass
class SearchConfig(TrainingBase):
    """``minitron search``: every architecture inside a parameter budget, pruned from one
    score file, scored zero-shot, the best ``top_k`` distilled briefly and ranked by held-out
    loss after that distillation (``--dry-run`` lists the candidates); see docs/search.md."""

    model: str = doc(REQUIRED, "The teacher: a minitron checkpoint or HF source.")
    scores: Optional[str] = doc(
        None, "Importance scores of the teacher (`minitron score`; width_method=activation)."
    )
    out: str = doc(REQUIRED, "Search directory (one sub-directory per candidate).")
    data: DataConfig = doc(
        factory=DataConfig,
        text="Prepared data: distillation on the train share, held-out loss on the validation share.",
    )
    budget: BudgetConfig = doc(factory=BudgetConfig, text="The parameter budget.")
    space: SpaceConfig = doc(factory=SpaceConfig, text="The search space.")
    width_method: str = doc("activation", "activation, magnitude or random.")
    depth: DepthConfig = doc(
        factory=lambda: DepthConfig(criterion="lm_loss"),
        text="How candidates that drop layers choose them (lm_loss: on the held-out loss).",
    )
    heldout_samples: int = doc(
        16, "Windows of the validation share for every held-out loss of the search."
    )
    task: Optional[MCTaskConfig] = doc(
        None, "Also score each candidate on this multiple-choice task (reported, not ranked)."
    )
    top_k: Optional[int] = doc(
        None, "Distil only the best top_k candidates by zero-shot loss (default: all)."
    )
    only: Optional[List[str]] = doc(
        None, "Restrict the search to these candidate names (e.g. a longer distillation of a few)."
    )
    distill: SearchDistillConfig = doc(
        factory=SearchDistillConfig, text="The short distillation of each candidate."
    )
    shard: Optional[str] = doc(
        None, "i/n: run every n-th candidate from the i-th (a SLURM array); then --collect."
    )
    collect: bool = doc(False, "Only rank what the candidates' directories hold (after shards).")

    def validate(self):
        super().validate()
        choice(self.width_method, WIDTH_METHODS, "width_method")
        positive(self.heldout_samples, "heldout_samples")
        if self.top_k is not None:
            positive(self.top_k, "top_k")
        if self.width_method == "activation" and not self.scores and not self.collect:
            raise ConfigError(
                "scores", "width_method=activation needs a score file: `minitron score` first"
            )
        if self.shard is not None:
            self.shard_index()

    def shard_index(self) -> tuple[int, int]:
        """(i, n) of ``shard``, or (0, 1)."""
        if self.shard is None:
            return 0, 1
        try:
            i, n = (int(x) for x in self.shard.split("/"))
        except ValueError:
            i, n = -1, 0
        if n < 1 or not 0 <= i < n:
            raise ConfigError("shard", f"{self.shard!r}: write i/n with 0 <= i < n, e.g. 0/4")
        return i, n
