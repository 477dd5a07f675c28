"""What a finished run reports (run_dir/summary.json): the counters, the headline rates, the CPU the run spent, and
the reports of its collaborators (ledger, faults, timeline, scheduler). One place, so both trainers write the same
keys; the benchmarks read them."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from verl_async_vla.controller.run_state import RunCounters
from verl_async_vla.telemetry import host_cpu
from verl_async_vla.telemetry.run_log import source_commit


@dataclass
class FitClock:
    """CPU around `fit`: the driver process's own time (its threads included: what the control plane costs) and the
    whole machine's over the same window (telemetry/host_cpu.py)."""

    executed_at_start: int
    cpu0: float = field(default_factory=time.process_time)
    host0: host_cpu.CpuTimes | None = field(default_factory=host_cpu.read)

    def stop(self, executed: int) -> dict[str, Any]:
        driver_cpu_s = time.process_time() - self.cpu0
        return {
            "driver_cpu_s": driver_cpu_s,
            "driver_cpu_us_per_env_step": 1e6 * driver_cpu_s / max(executed - self.executed_at_start, 1),
            "host_cpu": host_cpu.usage(self.host0, host_cpu.read(), executed - self.executed_at_start),
        }


def run_summary(trainer: str, seed: int, counters: RunCounters, wall_s: float, policy_version: int,
                success: tuple[float | None, float | None], cpu: dict[str, Any], reports: dict[str, Any],
                **where: Any) -> dict[str, Any]:  # fmt: skip
    """`success`: (start, final) evaluation; `reports`: ledger, faults, timeline, scheduler, and the run's own
    keys (stopped, resumed_from, eval_seconds_during_training); `where`: checkpoint, run_dir, date."""
    c = counters
    return {
        "trainer": trainer,
        "seed": seed,
        "success_start": success[0],
        "success_final": success[1],
        "env_steps": c.env_steps,
        "wall_minutes": wall_s / 60.0,
        "env_steps_executed": c.env_steps_executed,
        "env_steps_trained": c.env_steps_trained,
        # the headline: env steps that entered an update, per second of training
        "trained_env_steps_per_s": c.env_steps_trained / wall_s,
        # executed, open episodes included: what the envs ran, trained or not
        "env_steps_per_s": c.env_steps_executed / wall_s,
        "untrained_share": 1.0 - c.env_steps_trained / max(c.env_steps_executed, 1),
        # world-model envs (env.world_model): never in the real figures above
        "imagined_env_steps": c.imagined_env_steps,
        "imagined_env_steps_trained": c.imagined_env_steps_trained,
        **cpu,
        "iterations": c.iteration,
        "policy_version": policy_version,
        **reports,
        **where,
        "commit": source_commit(),  # the code this run was made with
    }
