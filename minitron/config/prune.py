"""Configs of importance estimation (``minitron score``) and pruning (``minitron prune``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

from minitron.choices import BATCH_AGG, DEPTH_CRITERIA, SEQ_AGG
from minitron.config.checks import DTYPE_CHOICES, choice, layout, out_free, positive
from minitron.config.loader import REQUIRED, doc
from minitron.config.schema import DataConfig, LossTaskConfig, MCTaskConfig
from minitron.errors import ConfigError

WIDTH_METHODS = ("activation", "magnitude", "random")


@dataclass
class ScoreConfig:
    """``minitron score``: importance of heads, neurons, channels and layers, at any TP/PP."""

    model: str = doc(REQUIRED, "A minitron checkpoint or HF source.")
    out: str = doc(REQUIRED, "Directory for scores.safetensors + scores.json (atomic).")
    data: Optional[DataConfig] = doc(
        None, "Calibration data (its train split is sampled); needed by method=activation."
    )
    num_samples: int = doc(1024, "Calibration samples (the paper: 1024), seeded by data.seed.")
    micro_batch_size: int = doc(4, "Samples per forward pass.")
    method: str = doc(
        "activation",
        "activation (forward hooks, the paper's estimators), "
        "magnitude (L2 of weights, LLM-Pruner's L2) or random (seeded baseline).",
    )
    seq_aggregation: str = doc(
        "mean", "Reduce each sample's activations over the sequence: mean, l2 or max (paper: mean)."
    )
    batch_aggregation: str = doc(
        "l2", "Reduce per-sample scores over the calibration set: l2, mean or max (paper: l2)."
    )
    block_scores: bool = doc(
        False,
        "Also measure Block Influence of every contiguous block of "
        "layers within a PP stage (keeps each layer's input in memory).",
    )
    seed: int = doc(1234, "Seed of the random method.")
    tp: int = doc(1, "Tensor-parallel size.")
    pp: int = doc(1, "Pipeline-parallel size.")
    dtype: str = doc("float32", "Compute dtype (scores accumulate in fp32 regardless).")
    overwrite: bool = doc(False, "Replace ``out`` if it exists.")
    progress: bool = doc(True, "Show a progress bar (rank 0).")

    def validate(self):
        layout(self)
        choice(self.method, WIDTH_METHODS, "method")
        choice(self.seq_aggregation, SEQ_AGG, "seq_aggregation")
        choice(self.batch_aggregation, BATCH_AGG, "batch_aggregation")
        choice(self.dtype, DTYPE_CHOICES, "dtype")
        positive(self.num_samples, "num_samples")
        positive(self.micro_batch_size, "micro_batch_size")
        if self.method == "activation" and self.data is None:
            raise ConfigError("data", "method=activation needs calibration data: data.paths=[...]")
        out_free(self.out, self.overwrite)


@dataclass
class TargetConfig:
    """The architecture to prune to; unset sizes stay as they are."""

    hidden_size: Optional[int] = doc(None, "Embedding channels to keep.")
    ffn_hidden_size: Optional[int] = doc(None, "MLP neurons to keep in every layer.")
    num_attention_heads: Optional[int] = doc(
        None, "Query heads to keep in every layer (a multiple of num_query_groups)."
    )
    num_query_groups: Optional[int] = doc(None, "KV groups to keep in every layer.")
    num_layers: Optional[int] = doc(None, "Layers to keep (depth pruning).")

    def sizes(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclass
class DepthConfig:
    """How depth pruning picks the layers to drop."""

    criterion: str = doc(
        "task",
        "task (accuracy on `task`, the paper's Winogrande), lm_loss "
        "(held-out loss on `loss`) or block_influence (1 - cosine, from the scores).",
    )
    contiguous: bool = doc(
        True, "Drop one contiguous block (paper) or the individually least important layers."
    )
    task: MCTaskConfig = doc(
        factory=lambda: MCTaskConfig(limit=500), text="The task for criterion=task."
    )
    loss: Optional[LossTaskConfig] = doc(None, "The held-out loss for criterion=lm_loss.")

    def validate(self):
        choice(self.criterion, DEPTH_CRITERIA, "criterion")


@dataclass
class PruneConfig:
    """``minitron prune``: a model -> a smaller checkpoint, by slicing weights and config together."""

    model: str = doc(REQUIRED, "A minitron checkpoint or HF source to prune.")
    out: str = doc(REQUIRED, "Checkpoint directory for the pruned model.")
    target: TargetConfig = doc(factory=TargetConfig, text="The pruned architecture.")
    scores: Optional[str] = doc(
        None,
        "Score directory from `minitron score` (needed for "
        "width_method=activation and criterion=block_influence).",
    )
    width_method: str = doc(
        "activation",
        "Which scores rank channels, heads and neurons: "
        "activation (the score file), magnitude or random (baselines, computed "
        "here).",
    )
    depth: DepthConfig = doc(
        factory=DepthConfig, text="Depth pruning (when target.num_layers is set)."
    )
    seed: int = doc(1234, "Seed of the random baseline.")
    batch_size: int = doc(32, "Requests per forward when the depth search scores a task.")
    micro_batch_size: int = doc(4, "Samples per forward when the depth search scores LM loss.")
    tp: int = doc(1, "Tensor-parallel size.")
    pp: int = doc(1, "Pipeline-parallel size (must divide the pruned number of layers).")
    dtype: Optional[str] = doc(None, "Parameter dtype; default: the source's.")
    reinit: bool = doc(
        False,
        "Write the pruned architecture with freshly initialised weights "
        "instead of the cut ones (the 'random init + distillation' ablation).",
    )
    dry_run: bool = doc(False, "Print the pruned architecture and parameter counts, then stop.")
    overwrite: bool = doc(False, "Replace ``out`` if it exists.")
    progress: bool = doc(True, "Show progress bars (rank 0).")

    def validate(self):
        layout(self)
        choice(self.width_method, WIDTH_METHODS, "width_method")
        if self.dtype is not None:
            choice(self.dtype, DTYPE_CHOICES, "dtype")
        if not self.target.sizes():
            raise ConfigError(
                "target",
                "set at least one of hidden_size, ffn_hidden_size, "
                "num_attention_heads, num_query_groups, num_layers",
            )
        if not self.dry_run:
            out_free(self.out, self.overwrite)
