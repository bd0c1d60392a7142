"""Multiple-choice task data: formats, loaders, and the text of each choice.

Two formats, one item type (:class:`MCItem`: per choice a context and a
continuation, plus the gold index):

- **winogrande** (``sentence`` with one ``_``, ``option1``, ``option2``, ``answer``
  "1"/"2"): lm-eval's partial scoring. Each option fills the blank to make the
  context ``sentence[:blank] + option``; the continuation is the rest of the
  sentence, ``" " + sentence[blank + 1:].strip()``, and is what gets scored.
- **generic** (``context``, ``choices`` list, ``gold`` index): the context is
  shared and each continuation is ``" " + choice``; ``acc_norm`` divides the
  log-likelihood by the choice's length in characters (as lm-eval does).

Sources: a local ``.jsonl`` file; ``builtin:winogrande`` (the Winogrande pairs of
BIG-bench's ``subtask029_winogrande_full_object``, parsed by
:func:`winogrande_from_bigbench` and shipped with minitron); ``bigbench`` or
``bigbench:PATH`` (parse them now from the installed ``bigbench`` package or its
sdist tarball); ``hf:DATASET[:CONFIG]:SPLIT`` (the Hugging Face Hub, where there
is internet). Malformed rows raise :class:`DataError` naming file and line.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import random
import re
import tarfile
from pathlib import Path
from typing import Iterable, Optional

from minitron.choices import TASK_FORMATS as FORMATS
from minitron.data.readers import json_rows
from minitron.errors import ConfigError, DataError

BUILTIN_WINOGRANDE = (
    Path(__file__).resolve().parents[1] / "data" / "tasks" / "winogrande_bigbench.jsonl.gz"
)
BIGBENCH_TASK = (
    "bigbench/benchmark_tasks/natural_instructions/subtask029_winogrande_full_object/task.json"
)


@dataclasses.dataclass(frozen=True)
class MCItem:
    """One multiple-choice question: choice i is scored as log p(continuations[i] | contexts[i])."""

    contexts: tuple[str, ...]
    continuations: tuple[str, ...]
    gold: int
    choice_texts: tuple[str, ...]  # what acc_norm normalises by (len in characters)

    def render(self, choice: int) -> str:
        """The full text of one choice (a few-shot example uses the gold one)."""
        return self.contexts[choice] + self.continuations[choice]


# ------------------------------------------------------------------ row -> item


def winogrande_item(row: dict, where: str) -> MCItem:
    for key in ("sentence", "option1", "option2", "answer"):
        if key not in row:
            raise DataError(
                f"{where}: no {key!r} field (a winogrande row needs sentence, "
                "option1, option2, answer)"
            )
    s = row["sentence"]
    if not isinstance(s, str) or s.count("_") != 1:
        raise DataError(f"{where}: the sentence must contain exactly one '_' blank")
    answer = str(row["answer"]).strip()
    if answer not in ("1", "2"):
        raise DataError(f'{where}: answer {row["answer"]!r} is out of range; use "1" or "2"')
    blank = s.index("_")
    options = (str(row["option1"]), str(row["option2"]))
    rest = " " + s[blank + 1 :].strip()
    return MCItem(
        contexts=tuple(s[:blank] + o for o in options),
        continuations=(rest, rest),
        gold=int(answer) - 1,
        choice_texts=options,
    )


def generic_item(row: dict, where: str) -> MCItem:
    for key in ("context", "choices", "gold"):
        if key not in row:
            raise DataError(
                f"{where}: no {key!r} field (a generic row needs context, choices, gold)"
            )
    choices = row["choices"]
    if (
        not isinstance(choices, list)
        or len(choices) < 2
        or not all(isinstance(c, str) for c in choices)
    ):
        raise DataError(f"{where}: 'choices' must be a list of at least two strings")
    gold = row["gold"]
    if not isinstance(gold, int) or isinstance(gold, bool) or not 0 <= gold < len(choices):
        raise DataError(
            f"{where}: gold {gold!r} is out of range for {len(choices)} choices "
            f"(0..{len(choices) - 1})"
        )
    ctx = str(row["context"])
    return MCItem(
        contexts=(ctx,) * len(choices),
        continuations=tuple(" " + c for c in choices),
        gold=gold,
        choice_texts=tuple(choices),
    )


def detect_format(row: dict) -> str:
    if "sentence" in row and "option1" in row:
        return "winogrande"
    if "choices" in row:
        return "generic"
    raise DataError(
        "cannot tell the format of the first row (fields: "
        f"{', '.join(row)}); set format: winogrande or generic"
    )


def items_from_rows(rows: Iterable[tuple[str, dict]], fmt: str = "auto") -> list[MCItem]:
    """``rows``: (location for errors, row dict) pairs."""
    out: list[MCItem] = []
    for where, row in rows:
        if not isinstance(row, dict):
            raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
        if fmt == "auto":
            try:
                fmt = detect_format(row)
            except DataError as e:
                raise DataError(f"{where}: {e}") from None
        out.append(winogrande_item(row, where) if fmt == "winogrande" else generic_item(row, where))
    if not out:
        raise DataError("the task has no items")
    return out


# ------------------------------------------------------------------ sources


def _read_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise ConfigError("path", f"{path} does not exist")
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    try:
        return raw.decode("utf-8").splitlines()
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise DataError(f"{path}:{line}: not UTF-8") from None


_BB_PAIR = re.compile(
    r"Sentence 1:\s*(.*?)\s*\nAnswer1:\s*(.*?)\s*\n"
    r"Sentence 2:\s*(.*?)\s*\nAnswer2:\s*(.*?)\s*$",
    re.S,
)


def winogrande_from_bigbench(task: dict) -> list[dict]:
    """Winogrande rows from BIG-bench's ``subtask029_winogrande_full_object`` task.json.

    Each example's target holds a sentence pair about two objects ("Sentence 1: ...
    Answer1: X. Sentence 2: ... Answer2: Y."): both sentences get options (X, Y),
    the first with answer "1", the second "2". Pairs whose two answers are equal,
    or whose sentences lack exactly one blank, are dropped (they cannot be scored).
    """
    rows = []
    for ex in task["examples"]:
        target = ex["target"][0] if isinstance(ex["target"], list) else ex["target"]
        m = _BB_PAIR.match(target.strip())
        if not m:
            continue
        s1, a1, s2, a2 = m.groups()
        a1, a2 = a1.rstrip(".").strip(), a2.rstrip(".").strip()
        if a1 == a2:
            continue
        for sentence, answer in ((s1, "1"), (s2, "2")):
            if sentence.count("_") == 1:
                rows.append({"sentence": sentence, "option1": a1, "option2": a2, "answer": answer})
    return rows


def _bigbench_task(spec: str) -> dict:
    """task.json from the installed bigbench package (``bigbench``) or its sdist (``bigbench:PATH``)."""
    if spec == "bigbench":
        from minitron.models.sources import package_file

        return json.loads(package_file("bigbench", BIGBENCH_TASK, "path").read_text())
    tar = Path(spec.split(":", 1)[1])
    if not tar.is_file():
        raise ConfigError("path", f"{tar} does not exist (expected the bigbench sdist tarball)")
    with tarfile.open(tar) as tf:
        member = next((m for m in tf.getmembers() if m.name.endswith(BIGBENCH_TASK)), None)
        if member is None:
            raise ConfigError("path", f"{tar} has no {BIGBENCH_TASK}")
        f = tf.extractfile(member)
        if f is None:
            raise ConfigError("path", f"{tar}: {member.name} is not a regular file")
        return json.load(f)


def _hub_rows(spec: str):
    parts = spec.split(":")[1:]
    if len(parts) not in (2, 3):
        raise ConfigError("path", f"{spec!r}: write hf:DATASET:SPLIT or hf:DATASET:CONFIG:SPLIT")
    dataset, config, split = (parts[0], None, parts[1]) if len(parts) == 2 else parts
    try:
        from datasets import load_dataset

        ds = load_dataset(dataset, config, split=split)
    except Exception as e:
        raise ConfigError(
            "path",
            f"{spec!r} could not be loaded from the Hugging Face Hub "
            f"({type(e).__name__}); without internet use a local jsonl or "
            "builtin:winogrande",
        ) from None
    return ((f"{spec}[{i}]", dict(row)) for i, row in enumerate(ds))


def load_items(path: str, fmt: str = "auto") -> list[MCItem]:
    """Items of a task source (see the module docstring for the accepted ``path`` values)."""
    if fmt not in FORMATS:
        raise ConfigError("format", f"{fmt!r}: valid are {', '.join(FORMATS)}")
    if path == "builtin:winogrande":
        return items_from_rows(
            json_rows(_read_lines(BUILTIN_WINOGRANDE), "builtin:winogrande"), "winogrande"
        )
    if path == "bigbench" or path.startswith("bigbench:"):
        rows = winogrande_from_bigbench(_bigbench_task(path))
        return items_from_rows(((f"{path}[{i}]", r) for i, r in enumerate(rows)), "winogrande")
    if path.startswith("hf:"):
        return items_from_rows(_hub_rows(path), fmt)
    p = Path(path)
    return items_from_rows(json_rows(_read_lines(p), str(p)), fmt)


# ------------------------------------------------------------------ subsets and few-shot


def subset(items: list[MCItem], limit: Optional[int], seed: int) -> list[MCItem]:
    """A seeded random subset of ``limit`` items, in their original order (all when None)."""
    if limit is None or limit >= len(items):
        return list(items)
    keep = sorted(random.Random(seed).sample(range(len(items)), limit))
    return [items[i] for i in keep]


def fewshot_prefixes(
    items: list[MCItem],
    pool: list[MCItem],
    k: int,
    seed: int,
    same_pool: bool,
    delimiter: str = "\n\n",
) -> list[str]:
    """For each item, ``k`` seeded examples from ``pool`` (never the item itself when the
    pool is the evaluated set), each rendered with its gold choice, joined and
    followed by the delimiter; "" when ``k`` is 0."""
    if k == 0:
        return [""] * len(items)
    need = k + 1 if same_pool else k
    if len(pool) < need:
        raise ConfigError(
            "num_fewshot", f"{k} examples asked but the few-shot pool has {len(pool)} items"
        )
    rng = random.Random(seed)
    out = []
    for item in items:
        picks = [ex for ex in rng.sample(pool, need) if not (same_pool and ex is item)][:k]
        out.append(delimiter.join(ex.render(ex.gold) for ex in picks) + delimiter)
    return out
