"""Machine-wide CPU use over a window, read from /proc/stat (Linux; elsewhere nothing is reported).

Why: on a few shared cores a trainer's speed is its cores divided by the CPU it spends per trained sample. This
reports what a run spent (busy core-seconds, per env step); the limit it is judged against is measured apart, with
every stage alone (telemetry/calibration.py), because a limit derived from the run's own CPU cost would count the
run's overheads as part of the limit. The counters are machine-wide, so other processes on the machine count too
(say so when quoting it on a shared machine). `steal_cores` is the time the hypervisor gave to other guests.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

PROC_STAT = Path("/proc/stat")


@dataclass(frozen=True)
class CpuTimes:
    """Cumulative machine-wide CPU seconds at one instant (all cores together)."""

    wall: float
    busy: float  # user + nice + system + irq + softirq
    idle: float  # idle + iowait
    steal: float


def read(stat: Path = PROC_STAT) -> CpuTimes | None:
    """The machine's CPU counters now, or None where /proc/stat is not available."""
    try:
        fields = (stat.read_text().splitlines() or [""])[0].split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    # user nice system idle iowait irq softirq steal [guest guest_nice: already inside user and nice]
    ticks = [int(x) for x in fields[1:9]]
    ticks += [0] * (8 - len(ticks))  # kernels before 2.6.11 have no steal column
    hz = os.sysconf("SC_CLK_TCK")
    user, nice, system, idle, iowait, irq, softirq, steal = (t / hz for t in ticks[:8])
    return CpuTimes(time.monotonic(), user + nice + system + irq + softirq, idle + iowait, steal)


def usage(start: CpuTimes | None, end: CpuTimes | None, env_steps: int) -> dict[str, float] | None:
    """CPU use between two readings: busy cores (mean over the window), the busy fraction of the machine, busy
    core-seconds in all and core-milliseconds per env step."""
    if start is None or end is None or end.wall <= start.wall:
        return None
    wall = end.wall - start.wall
    busy, idle, steal = end.busy - start.busy, end.idle - start.idle, end.steal - start.steal
    cores = os.cpu_count() or 1
    fraction = busy / max(busy + idle + steal, 1e-9)
    out = {
        "cores": float(cores),
        "busy_cores": busy / wall,
        "busy_fraction": fraction,
        "steal_cores": steal / wall,
        "busy_core_s": busy,
        "core_ms_per_env_step": 1000.0 * busy / max(env_steps, 1),
    }
    return out
