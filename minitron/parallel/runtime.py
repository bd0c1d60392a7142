"""Process groups: torch.distributed from torchrun's environment, then megatron-core's
``parallel_state`` for TP/PP (data parallel is whatever is left).

Works the same in one plain process (a world of one) and under
``torchrun --nproc_per_node N``. NCCL on GPU, gloo on CPU, where the CPU
compatibility layer (``cpu_compat``) is switched on first.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import socket
import sys

import torch
import torch.distributed as dist

from minitron.errors import ConfigError
from minitron.parallel import cpu_compat


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where this process sits in the TP x PP x DP grid."""

    tp: int
    pp: int
    dp: int
    rank: int
    world_size: int
    tp_rank: int
    pp_rank: int
    dp_rank: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def world_size_from_env() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def check_world(tp: int, pp: int, world_size: int | None = None) -> None:
    """Fail before any work when the process count cannot hold tp x pp."""
    world = world_size_from_env() if world_size is None else world_size
    if world % (tp * pp):
        hint = (
            f"run it as: torchrun --nproc_per_node {tp * pp} -m minitron ..."
            if world == 1
            else f"use a multiple of {tp * pp} processes"
        )
        raise ConfigError(
            "tp" if tp > 1 else "pp",
            f"tp={tp} x pp={pp} needs {tp * pp} processes (or a multiple), "
            f"but this run has {world}; {hint}",
        )


def init(tp: int = 1, pp: int = 1, seed: int = 1234, timeout_min: int = 30) -> Layout:
    """Initialise torch.distributed and megatron-core model parallelism (idempotent)."""
    from megatron.core import parallel_state as ps
    from megatron.core import tensor_parallel

    check_world(tp, pp)
    on_gpu = torch.cuda.is_available()
    if not on_gpu:
        cpu_compat.enable()
    if not dist.is_initialized():
        backend = "nccl" if on_gpu else "gloo"
        timeout = datetime.timedelta(minutes=timeout_min)
        if on_gpu:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        if "MASTER_ADDR" in os.environ:  # torchrun, srun + torchrun, ...
            dist.init_process_group(backend, timeout=timeout)
        else:  # a plain process: a world of one (the environment is left untouched)
            dist.init_process_group(
                backend,
                init_method=f"tcp://127.0.0.1:{_free_port()}",
                rank=0,
                world_size=1,
                timeout=timeout,
            )
    if ps.model_parallel_is_initialized():
        if (
            ps.get_tensor_model_parallel_world_size(),
            ps.get_pipeline_model_parallel_world_size(),
        ) != (tp, pp):
            ps.destroy_model_parallel()
    if not ps.model_parallel_is_initialized():
        ps.initialize_model_parallel(tensor_model_parallel_size=tp, pipeline_model_parallel_size=pp)
    tensor_parallel.model_parallel_cuda_manual_seed(seed)
    return layout()


def reseed(seed: int) -> None:
    """Seed torch's generator and megatron-core's model-parallel RNG streams."""
    from megatron.core import tensor_parallel

    torch.manual_seed(seed)
    tensor_parallel.model_parallel_cuda_manual_seed(seed)


def layout() -> Layout:
    from megatron.core import parallel_state as ps

    return Layout(
        tp=ps.get_tensor_model_parallel_world_size(),
        pp=ps.get_pipeline_model_parallel_world_size(),
        dp=ps.get_data_parallel_world_size(),
        rank=dist.get_rank(),
        world_size=dist.get_world_size(),
        tp_rank=ps.get_tensor_model_parallel_rank(),
        pp_rank=ps.get_pipeline_model_parallel_rank(),
        dp_rank=ps.get_data_parallel_rank(),
    )


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def shutdown() -> None:
    ps = sys.modules.get("megatron.core.parallel_state")
    if ps is not None and ps.model_parallel_is_initialized():
        ps.destroy_model_parallel()
    if dist.is_initialized():
        dist.destroy_process_group()


def on_main(fn, *args, **kwargs):
    """Run ``fn`` on global rank 0 only; every rank gets its result or raises its error.

    For work that must happen once (resolving or converting a source model) before
    the other ranks use what it produced."""
    from minitron.errors import MinitronError
    from minitron.parallel.collectives import broadcast_object

    result, error = None, None
    if not dist.is_initialized() or dist.get_rank() == 0:
        try:
            result = fn(*args, **kwargs)
        except MinitronError as e:
            error = e
    result, error = broadcast_object((result, error))
    if error is not None:
        raise error
    return result
