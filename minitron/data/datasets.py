"""Samples from prepared data, through megatron-core's GPTDataset and blending.

Every sample is ``seq_length + 1`` consecutive tokens of the shuffled, concatenated
documents (EOD-separated), split ``tokens = s[:-1]``, ``labels = s[1:]``. The
split by documents, the shuffle and the blend are megatron-core's own, seeded by
``DataConfig.seed``: the same config gives the same samples on every machine
and every TP/PP layout.

A prefix written by Megatron-LM's own ``tools/preprocess_data.py`` (``.bin``/``.idx``
without minitron's ``<name>.json`` sidecar) reads the same way: its size for the
default blend weights comes from the ``.idx``, and it brings no EOD of its own.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import torch

from minitron.config.schema import DataConfig
from minitron.data.prepare import INDEX_FILE
from minitron.data.tokenizer import DatasetTokenizer
from minitron.errors import ConfigError

SPLITS = ("train", "valid", "test")


def resolve_prefixes(cfg: DataConfig) -> list[tuple[str, dict]]:
    """(prefix, sidecar info) for every dataset ``cfg.paths`` names; ``{}`` for a prefix
    without a sidecar (Megatron-LM's preprocessing)."""
    out = []
    for i, p in enumerate(cfg.paths):
        path = Path(p)
        if path.is_dir():
            index = path / INDEX_FILE
            if not index.is_file():
                raise ConfigError(
                    f"data.paths[{i}]",
                    f"{path} has no {INDEX_FILE}; prepare it with `minitron data prepare`",
                )
            names = [d["prefix"] for d in json.loads(index.read_text())["datasets"]]
            prefixes = [str(path / n) for n in names]
        else:
            prefixes = [str(path)]
        for prefix in prefixes:
            for ext in (".bin", ".idx"):
                if not Path(prefix + ext).is_file():
                    raise ConfigError(
                        f"data.paths[{i}]",
                        f"{prefix}{ext} does not exist; give a "
                        "prepared directory or a dataset prefix without .bin/.idx",
                    )
            side = Path(prefix + ".json")
            info = json.loads(side.read_text()) if side.is_file() else {}
            out.append((prefix, info))
    return out


def dataset_tokens(prefix: str, info: dict) -> int:
    """Tokens in a dataset: from its sidecar, else counted in its ``.idx``."""
    if "tokens" in info.get("stats", {}):
        return int(info["stats"]["tokens"])
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    ds = IndexedDataset(prefix, mmap=True)  # held: its lengths are a view of the mapped .idx
    return int(ds.sequence_lengths.sum())


def build(cfg: DataConfig, sizes: dict[str, int], vocab_size: int):
    """{split: dataset} for the splits in ``sizes`` (samples wanted per split)."""
    from megatron.core.datasets.blended_megatron_dataset_builder import (
        BlendedMegatronDatasetBuilder,
    )
    from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig

    found = resolve_prefixes(cfg)
    eods = {info.get("key", {}).get("eod") for _, info in found} - {None}
    if len(eods) > 1:
        raise ConfigError(
            "data.paths",
            f"datasets were prepared with different EOD tokens {eods}; "
            "prepare them with the same tokenizer",
        )
    eod = eods.pop() if eods else 0
    prefixes = [p for p, _ in found]
    if cfg.weights is not None:
        weights = [float(w) for w in cfg.weights]
        if len(weights) != len(prefixes):
            raise ConfigError(
                "data.weights",
                f"{len(weights)} weights for {len(prefixes)} datasets "
                f"({', '.join(Path(p).name for p in prefixes)})",
            )
    else:
        weights = [float(dataset_tokens(p, info)) for p, info in found]
    cache = cfg.cache_dir or str(Path(prefixes[0]).parent / "cache")
    config = GPTDatasetConfig(
        random_seed=cfg.seed,
        sequence_length=cfg.seq_length,
        blend=(prefixes, weights if len(prefixes) > 1 else None),
        split=cfg.split,
        path_to_cache=cache,
        tokenizer=DatasetTokenizer(vocab_size, eod),
        reset_position_ids=False,
        reset_attention_mask=False,
        eod_mask_loss=False,
        create_attention_mask=False,
        mmap_bin_files=True,
    )
    want = [sizes.get(s, 0) for s in SPLITS]
    built = BlendedMegatronDatasetBuilder(GPTDataset, want, lambda: True, config).build()
    result = {}
    for split, ds in zip(SPLITS, built):
        if split not in sizes:
            continue
        if ds is None or len(ds) == 0:
            raise ConfigError(
                "data.split",
                f"the {split} split of {cfg.split!r} is empty; give it a share of the documents",
            )
        result[split] = ds
    return result


def take(dataset, n: int) -> dict[str, torch.Tensor]:
    """The first ``n`` samples (already shuffled by the seed), stacked: tokens, labels, loss_mask."""
    if n > len(dataset):
        raise ConfigError("num_samples", f"{n} samples asked, the split holds {len(dataset)}")
    items = [dataset[i] for i in range(n)]
    return {k: torch.stack([it[k] for it in items]) for k in ("tokens", "labels", "loss_mask")}


def samples(cfg: DataConfig, split: str, n: int, vocab_size: int) -> dict[str, torch.Tensor]:
    return take(build(cfg, {split: n}, vocab_size)[split], n)


def calibration_samples(cfg: DataConfig, n: int, vocab_size: int) -> torch.Tensor:
    """``n`` seeded random training windows of ``seq_length`` tokens, ``[n, seq_length]``."""
    return samples(cfg, "train", n, vocab_size)["tokens"]


def microbatches(batch: dict[str, torch.Tensor], size: int) -> list[dict[str, torch.Tensor]]:
    """Split stacked samples into micro-batches of ``size`` (the last may be smaller)."""
    n = next(iter(batch.values())).shape[0]
    return [{k: v[i : i + size] for k, v in batch.items()} for i in range(0, n, size)]


def group_equal(batches: Sequence[dict]) -> list[list[dict]]:
    """Consecutive micro-batches of equal shape (a pipeline call needs one shape)."""
    groups: list[list[dict]] = []
    for b in batches:
        if groups and groups[-1][0]["tokens"].shape == b["tokens"].shape:
            groups[-1].append(b)
        else:
            groups.append([b])
    return groups
