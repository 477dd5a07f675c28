"""Worker processes (the ground floor: imports nothing of the package): what one reports about itself (role, rank, pid, resident memory: the soak benchmark compares
them at the start and the end of a long run; fault-injection tests kill a worker by its pid), and asking many of
them something when some may be dead."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import psutil
import ray
import torch


@functools.cache
def _libc() -> ctypes.CDLL | None:
    """glibc, looked up once per process (find_library runs ldconfig: not for the trainer's loop)."""
    try:
        lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return lib if hasattr(lib, "malloc_trim") else None
    except OSError:
        return None


def return_free_memory() -> bool:
    """Give the pages glibc's allocator holds free back to the OS (`malloc_trim(0)`). A long-running worker allocates
    batch-sized buffers on one thread and frees them on another; glibc keeps such freed pages in its heaps, so resident
    memory climbs for minutes and then stays at the high-water mark (measured in the 30-minute soak: the actor +13 %
    between minute 5 and the end, levelling off after ~10 minutes). -> False where there is no glibc (macOS, musl)."""
    lib = _libc()
    return bool(lib.malloc_trim(0)) if lib is not None else False


def resident_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def process_info(role: str, rank: int) -> dict:
    """What a worker reports about itself; `nice` and `torch_threads` say what CPU it may take beside the others."""
    return {
        "role": role,
        "rank": rank,
        "pid": os.getpid(),
        "node": ray.get_runtime_context().get_node_id(),
        "rss_mb": resident_mb(),
        "nice": os.getpriority(os.PRIO_PROCESS, 0) if hasattr(os, "getpriority") else None,
        "torch_threads": torch.get_num_threads(),
    }


def answers_from_live(refs: Iterable[ray.ObjectRef]) -> list[Any]:
    """The answers of the workers that are alive; a worker process that died (and is being restarted by Ray,
    controller/recovery.py) has none. Any other error is raised."""
    out = []
    for ref in list(refs):
        try:
            out.append(ray.get(ref))
        except ray.exceptions.RayActorError:
            pass
    return out


def lower_priority(niceness: int) -> int:
    """Raise this process's nice value by `niceness`, for every thread it has now (Linux keeps a nice value per
    thread; threads started later inherit their creator's). Why: on shared cores the stages compete for CPU, and the
    one that sets the pace (the actor, which consumes what the others produce) should never wait for a core while
    producers that are ahead of it take one. -> threads changed (0 where the platform has no per-thread nice)."""
    if niceness <= 0:
        return 0
    tasks = Path("/proc/self/task")
    changed = 0
    for tid in (int(t.name) for t in tasks.iterdir()) if tasks.is_dir() else ():
        try:
            os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + niceness)
            changed += 1
        except (OSError, ProcessLookupError):  # a thread that ended meanwhile
            pass
    return changed


def actor_thread_count(actor_threads: int, torch_threads: int, actor_ranks: int, cores: int) -> int:
    """`trainer.actor_threads` -> each actor rank's intra-op threads: n > 0 as given, 0 = `torch_threads` (every
    worker's), -1 = this machine's cores shared out over the actor ranks."""
    if actor_threads > 0:
        return actor_threads
    if actor_threads == 0:
        return torch_threads
    if actor_threads == -1:
        return max(1, cores // max(1, actor_ranks))
    raise ValueError(
        f"trainer.actor_threads={actor_threads} must be >= -1 (0: trainer.torch_threads; -1: every core)."
    )


CPU_LAYOUTS = ("shared", "actor_apart")  # trainer.cpu_layout


def core_layout(layout: str, actor_ranks: int, cores: int) -> tuple[list[int], list[int]] | None:
    """`trainer.cpu_layout` on a machine with `cores` -> (the core of each actor rank, the cores every other process
    shares), or None for "shared" (the kernel places every process anywhere). "actor_apart" is the disaggregated
    placement on one machine: the stage that consumes what the others produce gets cores of its own, the way it
    would get its own GPUs on a cluster, so it never waits for a core while producers run ahead."""
    if layout not in CPU_LAYOUTS:
        raise ValueError(f"trainer.cpu_layout={layout!r} is unknown; use one of {list(CPU_LAYOUTS)}.")
    if layout == "shared":
        return None
    if cores <= actor_ranks:
        raise ValueError(
            f"trainer.cpu_layout=actor_apart gives each of the {actor_ranks} actor rank(s) a core of its own and "
            f"needs at least one more for the other workers, but this machine has {cores}; use "
            "trainer.cpu_layout=shared or fewer trainer.actor_workers."
        )
    return list(range(cores - actor_ranks, cores)), list(range(cores - actor_ranks))


def pin_to_cores(cores: Iterable[int] | None) -> int:
    """Restrict every thread this process has to `cores` (threads started later inherit their creator's mask, and
    so do child processes). -> threads changed (0 for None, or where the platform has no affinity)."""
    if cores is None or not hasattr(os, "sched_setaffinity"):
        return 0
    mask = set(cores)
    tasks = Path("/proc/self/task")
    changed = 0
    for tid in (int(t.name) for t in tasks.iterdir()) if tasks.is_dir() else (0,):
        try:
            os.sched_setaffinity(tid, mask)
            changed += 1
        except (OSError, ProcessLookupError):  # a thread that ended meanwhile
            pass
    return changed


def set_thread_budget(threads: int) -> None:
    """2 cores are shared by every Ray actor: each worker gets an explicit intra-op thread count."""
    torch.set_num_threads(max(1, threads))
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set in this process
        pass
