"""The gate on every pickle a checkpoint holds: nothing from a stranger's file runs.

megatron-core's ``torch_dist`` format stores three kinds of pickle:

* ``.metadata`` -- torch distributed-checkpoint metadata, which torch reads with a plain
  ``pickle.load`` (a crafted file runs any code it names);
* ``common.pt`` -- a ``torch.save`` zip of the non-sharded state;
* items inside ``*.distcp`` -- each tensor chunk and each byte object (a megatron-core
  ``ShardedObject``) is a ``torch.save`` zip; byte objects are read with
  ``torch.load(weights_only=False)``.

:func:`check_dist_checkpoint` reads every one of them first, through an unpickler that
resolves only the globals these formats need (:data:`ALLOWED`) and builds tensors as
stand-ins without touching their storage. Any other global -- ``os.system``,
``builtins.eval``, a class from an unrelated module -- is refused with a
:class:`~minitron.errors.CheckpointError` naming the file and the global, before torch or
megatron-core reads a byte. The metadata it admits is then used to find the items.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path
from typing import Any, BinaryIO, Optional

from minitron.errors import CheckpointError

_DCP = "torch.distributed.checkpoint"
_DTYPES = {
    "float32",
    "float16",
    "bfloat16",
    "float64",
    "int64",
    "int32",
    "int16",
    "int8",
    "uint8",
    "bool",
    "complex64",
    "float8_e4m3fn",
    "float8_e5m2",
}
_STORAGES = {
    "UntypedStorage",
    "FloatStorage",
    "HalfStorage",
    "BFloat16Storage",
    "DoubleStorage",
    "LongStorage",
    "IntStorage",
    "ShortStorage",
    "CharStorage",
    "ByteStorage",
    "BoolStorage",
    "ComplexFloatStorage",
}

#: module -> names an admitted pickle may refer to. Classes here are plain records
#: (dataclasses, enums, containers); the tensor builders are replaced by stand-ins.
ALLOWED: dict[str, frozenset[str]] = {
    "builtins": frozenset({"set", "frozenset", "slice", "complex", "bytearray"}),
    "collections": frozenset({"OrderedDict", "defaultdict"}),
    "_io": frozenset({"BytesIO"}),  # Transformer Engine's layer extra state (a byte buffer)
    "torch": frozenset({"Size", "device", "strided"} | _DTYPES | _STORAGES),
    "torch._utils": frozenset({"_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_parameter"}),
    "torch.serialization": frozenset({"_get_layout"}),
    f"{_DCP}.metadata": frozenset(
        {
            "Metadata",
            "TensorStorageMetadata",
            "BytesStorageMetadata",
            "ChunkStorageMetadata",
            "TensorProperties",
            "MetadataIndex",
            "StorageMeta",
            "_MEM_FORMAT_ENCODING",
        }
    ),
    f"{_DCP}.filesystem": frozenset({"_StorageInfo"}),
    f"{_DCP}.planner": frozenset({"SavePlan", "WriteItem", "WriteItemType", "TensorWriteData"}),
}
_STAND_INS = {("torch._utils", n) for n in ALLOWED["torch._utils"]}

#: What Megatron-LM adds to ``common.pt`` (megatron-core's own ``safe_globals`` list): the
#: ``args`` namespace and training records. Only :class:`argparse.Namespace` and
#: :class:`types.SimpleNamespace` are built as themselves; every other class becomes an
#: inert :class:`Record`, so no code of megatron, numpy or pathlib runs while reading.
MEGATRON: dict[str, frozenset[str]] = {
    "argparse": frozenset({"Namespace"}),
    "types": frozenset({"SimpleNamespace"}),
    "pathlib": frozenset({"PosixPath", "PurePosixPath", "Path"}),
    "signal": frozenset({"Signals"}),
    "_codecs": frozenset({"encode"}),  # protocol-2 pickles store bytes this way
    "megatron.core.enums": frozenset({"ModelType"}),
    "megatron.core.transformer.enums": frozenset({"AttnBackend", "CudaGraphScope"}),
    "megatron.core.optimizer": frozenset({"OptimizerConfig"}),
    "megatron.core.optimizer.optimizer_config": frozenset({"OptimizerConfig"}),
    "megatron.core.rerun_state_machine": frozenset({"RerunDiagnostic", "RerunMode", "RerunState"}),
    "numpy": frozenset({"ndarray", "dtype"}),
    "numpy.core.multiarray": frozenset({"_reconstruct", "scalar"}),
    "numpy._core.multiarray": frozenset({"_reconstruct", "scalar"}),
    "numpy.dtypes": frozenset({"UInt32DType", "Int64DType", "Float64DType"}),
}
_BUILT = {("argparse", "Namespace"), ("types", "SimpleNamespace")}


class Record:
    """An inert stand-in for an admitted class: it keeps the pickle's arguments and state
    (``.args``, ``.state``) and runs nothing. ``.name`` is the class it stands for."""

    name = "?"
    args: tuple[Any, ...]
    state: Any

    def __new__(cls, *args, **kwargs):
        obj = object.__new__(cls)
        obj.args, obj.state = args, None
        return obj

    def __setstate__(self, state) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"<{self.name} {self.args!r}>"


def _record(module: str, name: str) -> type:
    return type(name, (Record,), {"name": f"{module}.{name}"})


def _latin1(text: str, encoding: str = "latin1") -> bytes:
    if encoding.lower().replace("-", "") not in ("latin1", "iso88591"):
        raise CheckpointError(f"a pickle asks for the codec {encoding!r}; only latin1 is read")
    return text.encode("latin1")


def _stand_in(*args, **kwargs) -> None:
    return None


class _Storage:
    """What a storage reference becomes: nothing is read or allocated."""


class _Gate(pickle.Unpickler):
    def __init__(self, f: BinaryIO, where: str, megatron: bool = False):
        super().__init__(f)
        self.where = where
        self.megatron = megatron

    def find_class(self, module: str, name: str) -> Any:
        if self.megatron and name in MEGATRON.get(module, ()):
            if (module, name) in _BUILT:
                return super().find_class(module, name)
            return _latin1 if module == "_codecs" else _record(module, name)
        if name not in ALLOWED.get(module, ()):
            raise CheckpointError(
                f"{self.where}: refers to {module}.{name}, which a checkpoint has no use for; "
                "refusing to read it (it could run code). Load checkpoints only from people "
                "you trust, or ask for safetensors"
            )
        if (module, name) in _STAND_INS:
            return _stand_in
        if module == "torch" and name in _STORAGES:
            return _Storage
        return super().find_class(module, name)

    def persistent_load(self, pid: Any) -> None:  # torch zip files: tensor storage records
        return None


def check_pickle(data: bytes | BinaryIO, where: str, megatron: bool = False) -> Any:
    """Unpickle ``data`` through the gate; returns the admitted object (tensors as None).
    ``megatron=True`` also admits what Megatron-LM's ``common.pt`` holds (:data:`MEGATRON`)."""
    f = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data
    try:
        return _Gate(f, where, megatron).load()
    except CheckpointError:
        raise
    except Exception as e:  # malformed pickle: refuse it too
        raise CheckpointError(f"{where}: not a readable pickle ({type(e).__name__}: {e})") from None


def check_torch_file(data: bytes | BinaryIO | _Slice, where: str, megatron: bool = False) -> list:
    """Check every pickle of a ``torch.save`` zip (``data.pkl``; legacy files are refused);
    returns what they hold (tensors as None)."""
    try:
        z = zipfile.ZipFile(io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data)
    except zipfile.BadZipFile:
        raise CheckpointError(
            f"{where}: not a torch zip file (the legacy pickle format is not "
            "read: re-save it with a current torch)"
        ) from None
    with z:
        pickles = [n for n in z.namelist() if n.endswith(".pkl")]
        if not pickles:
            raise CheckpointError(f"{where}: a torch file without data.pkl")
        return [check_pickle(z.read(n), f"{where}:{n}", megatron) for n in pickles]


def read_common(path: str | Path) -> dict:
    """A Megatron-family checkpoint's ``common.pt`` (its ``args`` namespace, iteration,
    content metadata), read only through the gate: admitted classes other than the
    namespaces come back as :class:`Record`, tensors as None; {} when there is no file."""
    f_path = Path(path) / "common.pt"
    if not f_path.is_file():
        return {}
    with open(f_path, "rb") as f:
        found = check_torch_file(f, str(f_path), megatron=True)
    state = found[0] if found else None
    if not isinstance(state, dict):
        raise CheckpointError(f"{f_path}: holds a {type(state).__name__}, not a dict")
    return state


def check_dist_checkpoint(
    path: str | Path, keys: Optional[set] = None, common: bool = True
) -> None:
    """Gate every pickle of a megatron-core ``torch_dist`` checkpoint directory: the
    metadata, ``common.pt`` (unless ``common=False``: a load that never reads it) and every
    stored item, or (``keys``) only the items of those keys, the ones a load will read."""
    root = Path(path)
    meta = root / ".metadata"
    if not meta.is_file():
        raise CheckpointError(f"{root}: no .metadata; not a torch_dist checkpoint")
    with open(meta, "rb") as f:
        md = check_pickle(f, str(meta))
    storage = getattr(md, "storage_data", None)
    if not isinstance(storage, dict):
        raise CheckpointError(f"{meta}: no storage table; the file is not checkpoint metadata")
    common_pt = root / "common.pt"
    if common and common_pt.is_file():
        with open(common_pt, "rb") as f:
            check_torch_file(f, str(common_pt))
    by_file: dict[str, list] = {}
    for index, info in storage.items():
        if keys is not None and index.fqn not in keys and index.fqn.split("/")[0] not in keys:
            continue
        by_file.setdefault(str(info.relative_path), []).append((index, info))
    for rel, items in by_file.items():
        f_path = root / rel
        if Path(rel).is_absolute() or ".." in Path(rel).parts or not f_path.is_file():
            raise CheckpointError(f"{meta}: names a data file {rel!r} that is not in {root}")
        with open(f_path, "rb") as f:
            for index, info in items:
                if getattr(info, "transform_descriptors", None):
                    raise CheckpointError(
                        f"{f_path}: item {index.fqn} is stored with transforms "
                        f"{info.transform_descriptors}, which minitron does "
                        "not read"
                    )
                check_torch_file(_Slice(f, info.offset, info.length), f"{f_path}[{index.fqn}]")


class _Slice(io.RawIOBase):
    """A read-only window ``[offset, offset + length)`` of an open file, so zipfile reads
    an item's directory and ``data.pkl`` without reading its tensor bytes."""

    def __init__(self, f: io.BufferedIOBase, offset: int, length: int):
        super().__init__()
        self.f, self.offset, self.length, self.pos = f, offset, length, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, pos: int, whence: int = 0) -> int:
        base = {0: 0, 1: self.pos, 2: self.length}[whence]
        self.pos = min(max(base + pos, 0), self.length)
        return self.pos

    def readinto(self, buf) -> int:
        n = min(len(buf), self.length - self.pos)
        if n <= 0:
            return 0
        self.f.seek(self.offset + self.pos)
        got = self.f.readinto(memoryview(buf)[:n])
        self.pos += got
        return got


def dist_load(sharded_state_dict: dict, path: str | Path, foreign: bool = False, **kwargs):
    """megatron-core ``dist_checkpointing.load``, after :func:`check_dist_checkpoint` admits
    the directory: the one way minitron reads a ``torch_dist`` checkpoint.

    ``foreign=True`` (a checkpoint another tool wrote: Megatron-LM, Megatron-Bridge, NeMo)
    reads only the requested tensors: ``common.pt`` is never loaded (its training state is
    of no use here; :func:`read_common` reads what is) and only the requested items are
    checked, so optimizer and RNG entries of any kind are left alone."""
    from megatron.core import dist_checkpointing
    from megatron.core.dist_checkpointing.dict_utils import nested_values
    from megatron.core.dist_checkpointing.mapping import ShardedBase

    if not foreign:
        check_dist_checkpoint(path)
        return dist_checkpointing.load(sharded_state_dict, str(path), **kwargs)
    keys = {v.key for v in nested_values(sharded_state_dict) if isinstance(v, ShardedBase)}
    check_dist_checkpoint(path, keys=keys, common=False)
    return dist_checkpointing.load(
        sharded_state_dict, str(path), common_strategy=_no_common(), **kwargs
    )


def _no_common():
    from megatron.core.dist_checkpointing.strategies.base import LoadCommonStrategy

    class NoCommon(LoadCommonStrategy):
        """Loads nothing of ``common.pt``: a foreign checkpoint's training state."""

        def load_common(self, checkpoint_dir):
            return {}

        def load_sharded_objects(self, sharded_objects_state_dict, checkpoint_dir):
            raise CheckpointError(f"{checkpoint_dir}: minitron reads no objects of it")

        def check_backend_compatibility(self, loaded_version):
            pass

        def check_version_compatibility(self, loaded_version):
            pass

    return NoCommon()
