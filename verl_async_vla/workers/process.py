"""Worker processes: what one reports about itself (role, rank, pid, resident memory: the soak benchmark compares
them at the start and the end of a long run; fault-injection tests kill a worker by its pid), and asking many of
them something when some may be dead."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import psutil
import ray


def process_info(role: str, rank: int) -> dict:
    return {
        "role": role,
        "rank": rank,
        "pid": os.getpid(),
        "node": ray.get_runtime_context().get_node_id(),
        "rss_mb": psutil.Process().memory_info().rss / 2**20,
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
