"""The experiment directory of ``minitron run``: where every stage's output lives, and the
models the evaluation covers. Used by the stages that write there and the report that reads.

Layout of ``<workdir>``::

    checkpoints/teacher              import          data/             prepare
    correct/final/teacher            correct         scores/           score
    search/<student>/                search          (a searched student's candidates)
    checkpoints/<student>            prune           distill/final/<student> (together)
    align/<student>/{sft,pref}/      align           eval/<model>.json eval
    export/<student>/{hf,trtllm}     export          bench/            bench
    report.md, figures/              report          manifest.json
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

from minitron.config.run import RunConfig
from minitron.config.schema import DataConfig, LossTaskConfig
from minitron.train.metrics import student_tags


@dataclasses.dataclass
class Ctx:
    cfg: RunConfig
    work: Path
    log: Callable[[str], None]
    main: bool

    # ---- paths
    @property
    def imported(self) -> Path:
        return self.work / "checkpoints" / "teacher"

    @property
    def data_dir(self) -> Path:
        return self.work / "data"

    def teacher(self) -> Path:
        if self.cfg.correct.enabled:
            return self.work / "correct" / "final" / "teacher"
        return self.imported

    def pruned(self, s: str) -> Path:
        return self.work / "checkpoints" / s

    def search_dir(self, s: str) -> Path:
        """The architecture search that chooses student ``s`` (``minitron search``'s out)."""
        return self.work / "search" / s

    def searched(self) -> list:
        """The students chosen by a search."""
        return [st for st in self.cfg.students if st.search is not None]

    def distilled(self, s: str) -> Path:
        if self.cfg.distill.together:
            return self.work / "distill" / "final" / s
        return self.work / "distill" / s / "final" / "student"

    def distill_metrics(self, s: str) -> tuple[Path, str]:
        """(metrics.csv of the run that distilled ``s``, the suffix of its columns)."""
        if self.cfg.distill.together:
            names = [st.name for st in self.cfg.students]
            return self.work / "distill" / "metrics.csv", student_tags(names)[names.index(s)]
        return self.work / "distill" / s / "metrics.csv", ""

    def aligned(self, s: str) -> Path:
        a = self.cfg.align.preference
        pref = self.work / "align" / s / "pref"
        return (pref / f"round_{a.rounds}" if a.rounds > 1 else pref) / "final" / "policy"

    def final(self, s: str) -> Path:
        return self.aligned(s) if self.cfg.align.enabled else self.distilled(s)

    def data(self, seed: int = 1234) -> DataConfig:
        d = self.cfg.data
        return DataConfig(
            paths=[str(self.data_dir)], seq_length=d.seq_length, split=d.split, seed=seed
        )

    def heldout(self, n: int, seed: int = 99, split: str = "valid") -> LossTaskConfig:
        return LossTaskConfig(name="heldout", data=self.data(seed), split=split, num_samples=n)

    @property
    def eval_split(self) -> str:
        """Where the eval stage measures held-out loss: the test share when there is one (text
        no stage trained on or chose anything with), else the validation share."""
        from minitron.config.schema import check_split

        return "test" if check_split(self.cfg.data.split, "data.split")[2] > 0 else "valid"


def models_to_evaluate(ctx: Ctx) -> dict[str, Path]:
    models = {"teacher": ctx.imported}
    if ctx.cfg.correct.enabled:
        models["teacher (corrected)"] = ctx.teacher()
    for st in ctx.cfg.students:
        models[f"{st.name} (pruned)"] = ctx.pruned(st.name)
        models[f"{st.name} (distilled)"] = ctx.distilled(st.name)
        if ctx.cfg.align.enabled:
            models[f"{st.name} (aligned)"] = ctx.aligned(st.name)
    return models


def eval_file(ctx: Ctx, name: str) -> Path:
    return ctx.work / "eval" / (name.replace(" ", "_").replace("(", "").replace(")", "") + ".json")


def instruction_models(ctx: Ctx) -> dict[str, Path]:
    """The models the instruction-following set is run on: the teacher, and each student
    after distillation and after alignment."""
    return {
        n: p
        for n, p in models_to_evaluate(ctx).items()
        if n == "teacher" or n.endswith("(distilled)") or n.endswith("(aligned)")
    }


def instructions_file(ctx: Ctx, name: str) -> Path:
    return eval_file(ctx, name).with_suffix(".ifeval.json")
