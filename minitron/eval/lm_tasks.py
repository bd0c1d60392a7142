"""lm-eval tasks that ship with minitron, written out as task YAMLs for lm-eval to load.

``ifeval_mini``: 135 instruction-following prompts written for this project in IFEval's row
format (``minitron/data/tasks/ifeval_mini.jsonl``: word and paragraph limits, required,
forbidden and counted keywords, lowercase and capitals, bullet lists, JSON, titles in
``<<>>``, highlighted sections, postscripts, placeholders, quotations, response language,
repeating the request), scored by lm-eval's own IFEval checkers (its ``ifeval`` task's
``process_results``): prompt- and instruction-level, strict and loose accuracy. No
instruction needs nltk's sentence tokenizer data, so scoring runs offline. Generation is
greedy with at most 256 new tokens (IFEval's own 1280 is slow for small models on CPU).

    minitron lm-eval --model ckpt/sft --tasks ifeval_mini --apply_chat_template
"""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "data" / "tasks"
BUILTIN = ("ifeval_mini",)
IFEVAL_METRICS = (
    "prompt_level_strict_acc",
    "inst_level_strict_acc",
    "prompt_level_loose_acc",
    "inst_level_loose_acc",
)

_IFEVAL_YAML = """\
# written by minitron (minitron/eval/lm_tasks.py): IFEval's scoring on a local jsonl
task: ifeval_mini
dataset_path: json
dataset_name: null
dataset_kwargs:
  data_files:
    train: {data}
test_split: train
output_type: generate_until
num_fewshot: 0
doc_to_text: prompt
doc_to_target: 0
generation_kwargs:
  until: []
  do_sample: false
  temperature: 0.0
  max_gen_toks: {max_gen_toks}
process_results: !function utils.process_results
metric_list:
{metrics}
metadata:
  version: 4.0
"""

_IFEVAL_UTILS = '''\
"""lm-eval's own IFEval scoring, unchanged; langdetect seeded so that scores repeat."""
import langdetect

langdetect.DetectorFactory.seed = 0

from lm_eval.tasks.ifeval.utils import agg_inst_level_acc, process_results  # noqa: E402,F401
'''


def _metric(name: str) -> str:
    agg = "!function utils.agg_inst_level_acc" if name.startswith("inst") else "mean"
    return f"  - metric: {name}\n    aggregation: {agg}\n    higher_is_better: true"


def write_tasks(names, root: Path, max_gen_toks: int = 256) -> list[Path]:
    """Write the built-in tasks among ``names`` under ``root`` (one directory each); returns
    the directories to give lm-eval as include paths."""
    out = []
    for name in names:
        if name != "ifeval_mini":
            continue
        d = Path(root) / name
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{name}.yaml").write_text(
            _IFEVAL_YAML.format(
                data=DATA / "ifeval_mini.jsonl",
                max_gen_toks=int(max_gen_toks),
                metrics="\n".join(_metric(m) for m in IFEVAL_METRICS),
            )
        )
        (d / "utils.py").write_text(_IFEVAL_UTILS)
        out.append(d)
    return out
