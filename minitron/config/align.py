"""Config of ``minitron align``: SFT and the DPO / IPO / RPO preference losses."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from minitron.config.checks import choice, positive
from minitron.config.loader import REQUIRED, doc
from minitron.config.train import OptimConfig, ScheduleConfig, TrainingBase, check_out
from minitron.errors import ConfigError

ALGORITHMS = ("sft", "dpo", "ipo", "rpo")
RPO_DISTANCES = ("sq", "fwd_kl", "bwd_kl")
SFT_REDUCTIONS = ("sequence_mean", "sequence_sum", "token_mean")  # minitron.align.losses


@dataclass
class AlignConfig(TrainingBase):
    """``minitron align``: supervised fine-tuning or preference optimisation, any TP/PP."""

    model: str = doc(REQUIRED, "The policy to start from: a minitron checkpoint or HF source.")
    out: str = doc(REQUIRED, "Run directory; with several rounds, <out>/round_<k>/.")
    algorithm: str = doc("sft", "sft, dpo, ipo or rpo.")
    data: str = doc(
        REQUIRED,
        "Training rows: a .jsonl file, builtin:sft or builtin:preferences "
        "(optionally :train / :valid / :all).",
    )
    valid_data: Optional[str] = doc(
        None,
        "Held-out rows of the same kind, for validation (default "
        "for builtin sets: their :valid split).",
    )
    chat_template: str = doc(
        "auto", "auto (the tokenizer's chat template) or plain (User: / Assistant: lines)."
    )
    seq_length: int = doc(512, "Longest sequence; SFT packs conversations into rows of this size.")
    pack: bool = doc(True, "SFT: pack several conversations per row (block-diagonal attention).")
    reference: Optional[str] = doc(
        None, "Frozen reference of the first round (default: model, i.e. the SFT checkpoint)."
    )
    rounds: int = doc(
        1,
        "Preference rounds; round k's final policy is round k+1's start and "
        "reference (the paper: two rounds of RPO).",
    )
    beta: float = doc(0.1, "KL strength beta (NeMo-Aligner's ref_policy_kl_penalty).")
    eta: float = doc(
        1.0, "RPO: eta, the scale of the ground-truth reward gap (Nemotron-4 notation)."
    )
    gt_reward_scale: float = doc(1.0, "RPO: scale applied to the rewards as read from the data.")
    rpo_distance: str = doc(
        "bwd_kl",
        "RPO distance between implicit and target reward gaps: sq, "
        "fwd_kl, bwd_kl (NeMo-Aligner's rpo_sq, rpo_fwd_kl, rpo_bwd_kl).",
    )
    sft_loss_weight: float = doc(
        0.0, "Add this times the NLL of the chosen response (reduced as sft_reduction says)."
    )
    sft_reduction: str = doc(
        "sequence_mean",
        "The SFT term per pair, averaged over the step's "
        "pairs: sequence_mean (the chosen response's mean NLL per token; "
        "NeMo-Aligner with sft_average_log_probs=true), sequence_sum (its "
        "summed NLL; NeMo-Aligner's default) or token_mean (TRL: the mean "
        "over a micro-batch's chosen tokens, micro-batches weighted by "
        "pairs).",
    )
    average_log_probs: bool = doc(
        False, "Average (not sum) response log-probs in the preference loss."
    )
    default_chosen_reward: float = doc(1.0, "Reward of a chosen response without one in the data.")
    default_rejected_reward: float = doc(0.0, "Reward of a rejected response without one.")
    optim: OptimConfig = doc(
        factory=lambda: OptimConfig(lr=5e-6, min_lr=5e-7, warmup_steps=10), text="Policy optimizer."
    )
    schedule: ScheduleConfig = doc(
        factory=lambda: ScheduleConfig(steps=100, global_batch_size=8, micro_batch_size=4),
        text="Steps, batch sizes (pairs for preference algorithms).",
    )
    validation_samples: int = doc(64, "Held-out rows scored at each validation.")

    def validate(self):
        super().validate()
        check_out(self.out)
        choice(self.algorithm, ALGORITHMS, "algorithm")
        choice(self.rpo_distance, RPO_DISTANCES, "rpo_distance")
        choice(self.chat_template, ("auto", "plain"), "chat_template")
        choice(self.sft_reduction, SFT_REDUCTIONS, "sft_reduction")
        for f in ("seq_length", "rounds", "validation_samples"):
            positive(getattr(self, f), f)
        if self.beta <= 0:
            raise ConfigError("beta", "must be > 0")
        if self.algorithm == "sft" and self.rounds != 1:
            raise ConfigError("rounds", "rounds apply to preference algorithms; sft runs once")
        for field in ("data", "valid_data"):
            value = getattr(self, field)
            if value and not value.startswith("builtin:") and not Path(value).is_file():
                raise ConfigError(
                    field,
                    f"{value} does not exist; give a .jsonl file or "
                    "builtin:sft / builtin:preferences",
                )

    @property
    def loss_kind(self) -> str:
        return f"rpo_{self.rpo_distance}" if self.algorithm == "rpo" else self.algorithm
