"""Run megatron-core on a CPU-only torch (gloo), without touching its source.

megatron-core assumes CUDA in a handful of places (see docs/design.md, "CPU
compatibility"); each is redirected here and nowhere else:

1. Factory calls and moves that name a CUDA device (``device="cuda"``,
   ``device=torch.cuda.current_device()``, ``.cuda()``, ``.to("cuda")``) in
   rotary embeddings, causal masks, pipeline p2p buffers and the checkpoint
   saver: a ``TorchFunctionMode`` rewrites the device to CPU.
2. ``torch.cuda.current_device`` returns 0; ``torch.cuda.synchronize`` and
   ``torch.cuda.manual_seed_all`` do nothing.
3. The tensor-parallel RNG tracker forks "CUDA" RNG states; its get/set/seed
   functions are mapped to the CPU generator so ``model_parallel_cuda_manual_seed``
   and ``tracker.fork()`` work.
4. The optimizer and gradient clipping classify parameters by ``Tensor.type()``
   strings (``'torch.cuda.FloatTensor'``, ...; ``optimizer/optimizer.py``,
   ``distrib_optimizer.py``, ``clip_grads.py``): the no-argument call answers the
   CUDA name.
5. torch dispatches ``torch.autograd.backward`` through the function mode, which
   is switched off while it handles a call, so the whole backward would run
   unredirected (sequence-parallel gathers and recomputation allocate on "cuda"
   there): the mode re-enters itself around backward.

``enable()`` is a no-op when CUDA is available: on a GPU nothing is patched.

``enable_inference()`` adds three for ``megatron.core.inference`` (generation only; training
never imports it), also a no-op on a GPU:

6. ``TextGenerationController.__init__`` builds its sampling generator with
   ``torch.Generator(device=torch.cuda.current_device())``, a C constructor the mode never
   sees: during that call only, ``torch.Generator`` makes a CPU generator.
7. The static loop times every step with ``torch.cuda.Event``, a dummy class on CPU builds:
   ``_CpuEvent`` records wall time and answers ``elapsed_time`` in milliseconds.
8. At PP > 1 the last stage's logits are broadcast after ``communication_utils._is_cuda``
   asserts the tensor is on CUDA: the check keeps only its None test.
"""

from __future__ import annotations

import time

import torch
from torch.overrides import TorchFunctionMode

_ENABLED = False
_MODE: _CpuDeviceMode | None = None


def _is_cuda(device) -> bool:
    if device is None:
        return False
    if isinstance(device, int):  # torch.cuda.current_device() -> 0
        return True
    if isinstance(device, torch.device):
        return device.type == "cuda"
    if isinstance(device, str):
        return device.startswith("cuda")
    return False


_CPU = torch.device("cpu")


_CUDA_TYPE_NAMES = {
    "torch.FloatTensor": "torch.cuda.FloatTensor",
    "torch.HalfTensor": "torch.cuda.HalfTensor",
    "torch.BFloat16Tensor": "torch.cuda.BFloat16Tensor",
}


class _CpuDeviceMode(TorchFunctionMode):
    """Rewrites CUDA devices to CPU in every torch call that names one."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.Tensor.cuda:
            return args[0]
        if func is torch.Tensor.type and len(args) == 1 and not kwargs:
            # the optimizer and the gradient clipping classify parameters by these names
            name = func(*args)
            return _CUDA_TYPE_NAMES.get(name, name)
        if "device" in kwargs and _is_cuda(kwargs["device"]):
            kwargs = dict(kwargs, device=_CPU)
        if func is torch.Tensor.to and len(args) > 1 and _is_cuda(args[1]):
            args = (args[0], _CPU) + tuple(args[2:])
        return func(*args, **kwargs)


def _cpu_get_rng_state(device="cuda", clone=False, graph_safe=False):
    state = torch.get_rng_state()
    return state.clone() if clone else state


def _cpu_set_rng_state(new_state, device=-1, graph_safe=False):
    torch.set_rng_state(new_state)


def _with_mode(engine_run_backward):
    """Run autograd's engine with the mode active: a mode is switched off while it handles a
    call, and ``torch.autograd.backward`` is dispatched through it, so the whole backward pass
    (sequence-parallel gathers, recomputed forwards) would otherwise run unredirected."""

    def run(*args, **kwargs):
        from torch.overrides import _get_current_function_mode_stack

        if _MODE is None or _MODE in _get_current_function_mode_stack():
            return engine_run_backward(*args, **kwargs)
        with _MODE:
            return engine_run_backward(*args, **kwargs)

    return run


def enabled() -> bool:
    """True when the CPU redirections are active in this process."""
    return _ENABLED


def enable() -> bool:
    """Install the redirections once per process; returns whether they are active."""
    global _ENABLED, _MODE
    if _ENABLED:
        return True
    if torch.cuda.is_available():
        return False

    torch.cuda.current_device = lambda: 0
    torch.cuda.synchronize = lambda *a, **k: None
    torch.cuda.manual_seed_all = lambda *a, **k: None
    torch.cuda.manual_seed = torch.manual_seed  # type: ignore[assignment]  # monkeypatch: CPU build
    torch.cuda.get_rng_state = lambda *a, **k: torch.get_rng_state()
    torch.cuda.set_rng_state = lambda state, *a, **k: torch.set_rng_state(state)

    from megatron.core.tensor_parallel import random as mcore_random

    mcore_random._get_cuda_rng_state = _cpu_get_rng_state
    mcore_random._set_cuda_rng_state = _cpu_set_rng_state

    torch.autograd._engine_run_backward = _with_mode(torch.autograd._engine_run_backward)
    _MODE = _CpuDeviceMode()
    _MODE.__enter__()
    _ENABLED = True
    return True


class _CpuEvent:
    """``torch.cuda.Event`` for a CPU build: wall-clock timing, in milliseconds like CUDA's."""

    def __init__(self, enable_timing=False, blocking=False, interprocess=False):
        self.t = 0.0

    def record(self, stream=None):
        self.t = time.perf_counter()

    def synchronize(self):
        pass

    def query(self):
        return True

    def wait(self, stream=None):
        pass

    def elapsed_time(self, end: _CpuEvent) -> float:
        return (end.t - self.t) * 1e3


_INFERENCE = False


def enable_inference() -> bool:
    """Install the inference engine's redirections (6-8 above) once per process, after
    ``enable()``; returns whether they are active."""
    global _INFERENCE
    if _INFERENCE:
        return True
    if not enable():
        return False
    from megatron.core.inference import communication_utils
    from megatron.core.inference.text_generation_controllers import text_generation_controller

    torch.cuda.Event = _CpuEvent  # type: ignore[misc, assignment]  # monkeypatch: CPU build
    controller = text_generation_controller.TextGenerationController
    original = controller.__init__

    def __init__(self, *args, **kwargs):
        real = torch.Generator
        torch.Generator = lambda device=None: real(device="cpu")
        try:
            original(self, *args, **kwargs)
        finally:
            torch.Generator = real

    controller.__init__ = __init__

    def _present(tensor):
        assert tensor is not None, "tensor is None"

    communication_utils._is_cuda = _present
    _INFERENCE = True
    return True
