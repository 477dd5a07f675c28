"""What a worker process reports about itself: its role, rank, pid and resident memory (the soak benchmark compares
them at the start and the end of a long run; fault-injection tests kill a worker by its pid)."""

from __future__ import annotations

import os

import psutil


def process_info(role: str, rank: int) -> dict:
    return {
        "role": role,
        "rank": rank,
        "pid": os.getpid(),
        "rss_mb": psutil.Process().memory_info().rss / 2**20,
    }
