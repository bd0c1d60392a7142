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
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    "generation_config.json",
    "chat_template.jinja",
    "chat_template.json",
    "added_tokens.json",
)


_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


def _header(path: Path) -> tuple[dict, int]:
    """(tensor table, byte offset of the data) of a safetensors file."""
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise CheckpointError(f"{path} is not a safetensors file (too short)")
        n = int.from_bytes(raw, "little")
        if n > 100 * 2**20:
            raise CheckpointError(f"{path} is not a safetensors file (header of {n} bytes)")
        try:
            table = json.loads(f.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise CheckpointError(f"{path} is not a safetensors file (unreadable header)") from None
    table.pop("__metadata__", None)
    return table, 8 + n


class HFReader:
    """Reads tensors of a HF model directory one at a time, on demand.

    Plain reads, no mmap: only the tensor asked for occupies memory, so importing
    needs about the model's size plus one tensor (a PP stage reads only its layers).
    """

    def __init__(self, model_dir: str | Path):
        self.dir = Path(model_dir)
        if (self.dir / INDEX).is_file():
            files = sorted(set(json.loads((self.dir / INDEX).read_text())["weight_map"].values()))
        elif (self.dir / SINGLE).is_file():
            files = [SINGLE]
        else:
            found = sorted(p.name for p in self.dir.glob("*.bin"))
            hint = (
                " (found PyTorch .bin files: convert them to safetensors first, e.g. "
                "load with transformers and save_pretrained(safe_serialization=True))"
                if found
                else ""
            )
            raise CheckpointError(f"{self.dir}: no {SINGLE} or {INDEX}{hint}")
        self.where: dict[str, tuple[Path, dict, int]] = {}
        for fname in files:
            path = self.dir / fname
            if not path.is_file():
                raise CheckpointError(f"{path} is listed in {INDEX} but missing")
            table, start = _header(path)
            size = path.stat().st_size
            for name, info in table.items():
                if start + info["data_offsets"][1] > size:
                    raise CheckpointError(
                        f"{path}: tensor {name!r} ends past the end of the file; "
                        "the file is truncated"
                    )
                self.where[name] = (path, info, start)

    def names(self) -> list[str]:
        return list(self.where)

    def __call__(self, name: str) -> torch.Tensor:
        if name not in self.where:
            raise CheckpointError(
                f"{self.dir}: tensor {name!r} not found; is this a Llama/Mistral "
                "checkpoint with the sizes in its config.json?"
            )
        path, info, start = self.where[name]
        if info["dtype"] not in _DTYPES:
            raise CheckpointError(f"{path}: {name!r} has unsupported dtype {info['dtype']}")
        begin, end = info["data_offsets"]
        buf = bytearray(end - begin)
        with open(path, "rb") as f:
            f.seek(start + begin)
            if f.readinto(buf) != len(buf):
                raise CheckpointError(f"{path}: cannot read {name!r}; the file is truncated")
        if not buf:
            return torch.empty(info["shape"], dtype=_DTYPES[info["dtype"]])
        return torch.frombuffer(buf, dtype=_DTYPES[info["dtype"]]).reshape(info["shape"])


def write_safetensors(
    tensors: Iterable[tuple[str, torch.Tensor]], out_dir: Path, max_shard_bytes: int = 5 * 2**30
) -> list[str]:
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
    (out_dir / INDEX).write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2)
    )
    return files + [INDEX]


def copy_tokenizer(src: Path, dst: Path) -> list[str]:
    """Copy the tokenizer and generation files that exist in ``src``."""
    copied = []
    for name in TOKENIZER_FILES:
        if (src / name).is_file():
            shutil.copy2(src / name, dst / name)
            copied.append(name)
    return copied
