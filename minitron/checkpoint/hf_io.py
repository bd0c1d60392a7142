"""Read and write Hugging Face safetensors checkpoints (single file or sharded with an index)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Iterable

import torch

from minitron.errors import CheckpointError

INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "tokenizer.model", "vocab.json", "merges.txt", "generation_config.json",
                   "chat_template.jinja", "chat_template.json", "added_tokens.json")


class HFReader:
    """Lazy reader of the tensors of a HF model directory: opens each file once, reads
    a tensor only when asked (a PP stage reads only its layers)."""

    def __init__(self, model_dir: str | Path):
        from safetensors import safe_open

        self.dir = Path(model_dir)
        if (self.dir / INDEX).is_file():
            index = json.loads((self.dir / INDEX).read_text())
            self.where = dict(index["weight_map"])
        elif (self.dir / SINGLE).is_file():
            self.where = None
        else:
            found = sorted(p.name for p in self.dir.glob("*.bin"))
            hint = (" (found PyTorch .bin files: convert them to safetensors first, e.g. "
                    "load with transformers and save_pretrained(safe_serialization=True))"
                    if found else "")
            raise CheckpointError(f"{self.dir}: no {SINGLE} or {INDEX}{hint}")
        self._open = safe_open
        self._files: dict[str, object] = {}
        if self.where is None:
            self.where = {k: SINGLE for k in self._file(SINGLE).keys()}

    def _file(self, fname: str):
        if fname not in self._files:
            path = self.dir / fname
            if not path.is_file():
                raise CheckpointError(f"{path} is listed in {INDEX} but missing")
            try:
                self._files[fname] = self._open(str(path), framework="pt")
            except Exception as e:
                raise CheckpointError(f"{path} is not a readable safetensors file ({e})") from None
        return self._files[fname]

    def names(self) -> list[str]:
        return list(self.where)

    def __call__(self, name: str) -> torch.Tensor:
        if name not in self.where:
            raise CheckpointError(f"{self.dir}: tensor {name!r} not found; is this a Llama/Mistral "
                                  "checkpoint with the sizes in its config.json?")
        try:
            return self._file(self.where[name]).get_tensor(name)
        except CheckpointError:
            raise
        except Exception as e:
            raise CheckpointError(f"{self.dir / self.where[name]}: cannot read {name!r} ({e}); "
                                  "the file may be truncated") from None


def write_safetensors(tensors: Iterable[tuple[str, torch.Tensor]], out_dir: Path,
                      max_shard_bytes: int = 5 * 2**30) -> list[str]:
    """Write ``model.safetensors`` (or numbered shards plus an index) into ``out_dir``."""
    from safetensors.torch import save_file

    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name, t in tensors:
        nbytes = t.numel() * t.element_size()
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = t.contiguous()
        size += nbytes
    if len(shards) == 1:
        save_file(shards[0], str(out_dir / SINGLE), metadata={"format": "pt"})
        return [SINGLE]
    n = len(shards)
    weight_map, total, files = {}, 0, []
    for i, shard in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{n:05d}.safetensors"
        save_file(shard, str(out_dir / fname), metadata={"format": "pt"})
        files.append(fname)
        for k, t in shard.items():
            weight_map[k] = fname
            total += t.numel() * t.element_size()
    (out_dir / INDEX).write_text(json.dumps(
        {"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    return files + [INDEX]


def copy_tokenizer(src: Path, dst: Path) -> list[str]:
    """Copy the tokenizer and generation files that exist in ``src``."""
    copied = []
    for name in TOKENIZER_FILES:
        if (src / name).is_file():
            shutil.copy2(src / name, dst / name)
            copied.append(name)
    return copied

