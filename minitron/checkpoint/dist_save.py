"""``dist_checkpointing.save`` with a results queue whose server process dies with its parent.

megatron-core's file writer (``strategies/filesystem_async.py``) hands its write results back
through a queue served by a ``multiprocessing.Manager``, started with the ``spawn`` context the
first time a rank writes and kept for the life of the process. The manager's server is a
separate Python process that knows nothing of its parent: when the parent exits cleanly the
manager is shut down by multiprocessing's exit hooks, but when it is killed (SIGKILL, the OOM
killer, a scheduler's preemption, torchrun tearing down a failed rank) the server lives on,
an orphan holding a socket, a few hundred MB and, under spawn, a copy of torch.

Here the queue is created by our own manager, whose server asks the kernel to send it SIGTERM
when its parent dies (Linux ``PR_SET_PDEATHSIG``; elsewhere the behaviour is megatron-core's),
and installed where megatron-core looks for it. Every checkpoint write of minitron goes
through :func:`dist_save`; :func:`shutdown` ends the server explicitly (tests, long-lived
processes that are done writing).
"""

from __future__ import annotations

import os
import signal
from typing import Optional

_manager = None  # our SyncManager, once a rank has written


def _die_with_parent(parent: int) -> None:
    """Initializer of the manager's server process (module level: spawn pickles it)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: no parent-death signal
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(0)


def install() -> None:
    """Make megatron-core's writer use a queue from a manager that dies with this process."""
    global _manager
    from megatron.core.dist_checkpointing.strategies import filesystem_async

    if _manager is not None and filesystem_async._results_queue is not None:
        return
    import multiprocessing
    from multiprocessing.managers import SyncManager

    manager = SyncManager(ctx=multiprocessing.get_context("spawn"))
    manager.start(initializer=_die_with_parent, initargs=(os.getpid(),))
    _manager = manager
    filesystem_async._results_queue = manager.Queue()


def dist_save(state: dict, path: str, **kwargs) -> None:
    """Collective: ``megatron.core.dist_checkpointing.save(state, path, **kwargs)``."""
    from megatron.core import dist_checkpointing

    install()
    dist_checkpointing.save(state, path, **kwargs)


def shutdown() -> Optional[int]:
    """Stop the manager's server (a later :func:`dist_save` starts another); its pid, if any."""
    global _manager
    if _manager is None:
        return None
    from megatron.core.dist_checkpointing.strategies import filesystem_async

    pid = _manager._process.pid  # type: ignore[attr-defined]  # SyncManager's private server process
    filesystem_async._results_queue = None
    _manager.shutdown()
    _manager = None
    return pid
