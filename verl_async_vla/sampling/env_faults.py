"""What counts as an env fault, and the checks at the boundary where observations and actions enter.

A fault costs its env's current episode (discarded, counted) and, unless the fault was the policy's (a non-finite
action), a rebuild of the env; an env rebuilt more than `env.faults.max_rebuilds` times is quarantined, and the run
stops with `EnvFleetError` only when fewer than `env.faults.min_live_fraction` of the training envs remain.
sampling/env_lanes.py applies this; docs/reliability.md lists every fault, how it is injected and what it costs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from verl_async_vla.envs.base import EnvSpec, ShardObs, ShardStep

FAULT_KINDS = ("raised", "hang", "bad_obs", "bad_action", "rebuild_failed")


class EnvFault(Exception):
    """One env misbehaved (or was handed bad input); its episode is discarded."""

    def __init__(self, kind: str, message: str, rebuild: bool = True):
        super().__init__(f"{kind}: {message}")
        self.kind, self.message, self.rebuild = kind, message, rebuild


class StaleLane(Exception):
    """A call returned on a lane that was replaced while it hung: its result belongs to nobody."""


class EnvFleetError(RuntimeError):
    """Too few envs are left to go on."""


@dataclass
class EnvHealth:
    faults: int = 0
    rebuilds: int = 0
    quarantined: bool = False
    last_error: str = ""
    task: str = ""  # the instruction of its last episode, to name the env in messages


@dataclass
class FaultRecord:
    env: int  # global env index
    task: str
    kind: str
    error: str
    at_s: float  # seconds since the lanes started
    outcome: str  # "rebuilt" | "reset" | "quarantined"
    unix: float = 0.0  # wall-clock time (comparable across worker processes)
    # seconds from the fault to the end of the next episode this env completed: the evidence that it recovered
    # (None: it completed none afterwards, by the end of the run or of its worker process)
    next_episode_after_s: float | None = None


@dataclass
class FaultLog:
    records: list[FaultRecord] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {k: sum(r.kind == k for r in self.records) for k in FAULT_KINDS}


def check_obs(obs: ShardObs, spec: EnvSpec) -> None:
    """Observations enter training here: wrong shapes, non-finite states or empty instructions are the env's fault."""
    n = len(obs.env_ids)
    if obs.image.shape != (n, *spec.image_shape) or obs.image.dtype != np.uint8:
        raise EnvFault(
            "bad_obs", f"image {obs.image.shape} {obs.image.dtype}, expected ({n}, {spec.image_shape}) uint8"
        )
    if obs.state.shape != (n, spec.state_dim):
        raise EnvFault("bad_obs", f"state {obs.state.shape}, expected ({n}, {spec.state_dim})")
    if not np.isfinite(obs.state).all():
        raise EnvFault("bad_obs", "non-finite proprio state")
    if len(obs.instruction) != n or any(not isinstance(t, str) or not t.strip() for t in obs.instruction):
        raise EnvFault("bad_obs", f"empty or missing instruction: {obs.instruction!r}")


def check_step(res: ShardStep, spec: EnvSpec) -> None:
    check_obs(res.obs, spec)
    if not all(math.isfinite(float(r)) for r in res.reward):
        raise EnvFault("bad_obs", f"non-finite reward {res.reward!r}")


def check_chunk(chunk: np.ndarray, spec: EnvSpec) -> None:
    """An action chunk (K, A) from the policy. Finite values outside [-1, 1] are clipped by the envs (Gaussian heads
    sample unbounded actions by design); non-finite values or a wrong shape are the policy's fault: the episode is
    discarded, the env is not rebuilt."""
    if chunk.ndim != 2 or chunk.shape[1] != spec.action_dim:
        raise EnvFault(
            "bad_action", f"action chunk {chunk.shape}, expected (chunk, {spec.action_dim})", rebuild=False
        )
    if not np.isfinite(chunk).all():
        raise EnvFault("bad_action", "non-finite action from the policy", rebuild=False)
