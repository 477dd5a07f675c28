"""The env-shard API: one worker holds N environments and steps them as a batch.

Designed for real VLA simulators (LIBERO, ManiSkill) as much as for the embedded task: observations are an RGB
image, a proprio state and a language instruction; actions are *chunks* (K steps of A dims, as OpenVLA-OFT and pi0
emit); resets may be slow and may target any subset of envs, so a shard never forces a global barrier.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# Evaluation layouts are drawn from seeds at and above this value; training shards draw theirs from per-env
# generators seeded by (run seed, env index), a different stream, so evaluation is on held-out layouts.
HELD_OUT_SEED_BASE = 1_000_000_007


@dataclass(frozen=True)
class EnvSpec:
    """What a policy must agree with before the first step (checked at start-up)."""

    image_shape: tuple[int, int, int]  # (H, W, 3), uint8
    state_dim: int
    action_dim: int
    max_episode_steps: int  # in env (control) steps, not decisions


@dataclass
class ShardObs:
    """Observations of a subset of a shard's envs, row i belonging to env_ids[i]."""

    env_ids: np.ndarray  # (n,) int64
    image: np.ndarray  # (n, H, W, 3) uint8
    state: np.ndarray  # (n, state_dim) float32
    instruction: list[str]

    @classmethod
    def empty(cls, spec: EnvSpec) -> ShardObs:
        """No rows (e.g. a step in which none of a shard's envs finished, so none resets)."""
        return cls(np.zeros(0, dtype=np.int64), np.zeros((0, *spec.image_shape), dtype=np.uint8),
                   np.zeros((0, spec.state_dim), dtype=np.float32), [])  # fmt: skip


@dataclass
class ShardStep:
    """Outcome of one action chunk per env: rewards are summed over the executed steps of the chunk."""

    obs: ShardObs
    reward: np.ndarray  # (n,) float32
    terminated: np.ndarray  # (n,) bool, task finished (success or failure the env declares)
    truncated: np.ndarray  # (n,) bool, time limit reached
    success: np.ndarray  # (n,) bool
    env_steps: np.ndarray  # (n,) int64 control steps actually executed (a chunk stops at episode end)
    # (n,) bool, set by the env lanes only: the env faulted and this episode is discarded (sampling/env_faults.py)
    discarded: np.ndarray | None = None


class EnvShard(ABC):
    """N envs stepped as a batch. Implementations: `embedded_reach`, `libero`, `metaworld`, `gymnasium`, `emulated`."""

    num_envs: int
    spec: EnvSpec

    @abstractmethod
    def reset(self, env_ids: np.ndarray, seeds: np.ndarray | None = None) -> ShardObs:
        """Start new episodes in `env_ids` (seeds make the layouts reproducible)."""

    @abstractmethod
    def step(self, env_ids: np.ndarray, actions: np.ndarray) -> ShardStep:
        """Execute one action chunk (n, K, A) in each of `env_ids`; a finished env must be reset first."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release simulator resources."""

    def get_rng_state(self) -> object | None:
        """What draws the next layouts (JSON-able), for exact resume; None: this backend cannot export it (a
        resumed run then draws new layouts)."""
        return None

    def set_rng_state(self, state: object) -> None:  # noqa: B027 - optional hook
        """Restore `get_rng_state`'s output."""

    def check_actions(self, env_ids: np.ndarray, actions: np.ndarray) -> None:
        """Fail with a message that names the mismatch, not deep inside the simulator."""
        if actions.ndim != 3 or actions.shape[0] != len(env_ids) or actions.shape[2] != self.spec.action_dim:
            raise ValueError(
                f"{type(self).__name__}.step expects actions of shape (n_envs={len(env_ids)}, chunk, "
                f"action_dim={self.spec.action_dim}), got {tuple(actions.shape)}; set model.action_dim="
                f"{self.spec.action_dim} to match the env."
            )


class PerEnvRngs:
    """Mixin for shards that draw each env's next layout from its own numpy Generator (`self.rngs`): their state is
    what a resumed run needs to draw the same layouts (`EnvShard.get_rng_state`)."""

    rngs: list[np.random.Generator]

    def get_rng_state(self) -> list[dict]:
        return [rng.bit_generator.state for rng in self.rngs]

    def set_rng_state(self, state: list[dict]) -> None:
        for rng, s in zip(self.rngs, state, strict=True):
            rng.bit_generator.state = s

    def draw_start(
        self, i: int, seed: int | None, train: Sequence[int], held: Sequence[int]
    ) -> tuple[int, np.random.Generator]:
        """-> (start, generator) of env i's next episode: a training start from the env's own stream, or, for a
        pinned seed, from a generator of that seed (a held-out seed, >= HELD_OUT_SEED_BASE: a held-out start). The
        generator is returned for the episode's other draws (an instruction's phrasing).

        A held-out start is drawn from its seed, never taken as seed % len(held): evaluation hands env j of n the
        seeds base + wave * n + j, so with the modulus an env count that is a multiple of len(held) replays one start
        per env every wave (MetaWorld MT10 evaluated on 10 envs measured one variation per task)."""
        rng = self.rngs[i] if seed is None else np.random.default_rng(seed)
        pool = held if seed is not None and seed >= HELD_OUT_SEED_BASE else train
        if not len(pool):
            raise ValueError(
                "no starts to draw from: the split left this pool empty (see the env's *_init_states / "
                "eval_variations setting)."
            )
        return int(pool[int(rng.integers(len(pool)))]), rng
