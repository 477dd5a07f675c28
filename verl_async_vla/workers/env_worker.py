"""EnvWorker: one rank holds N envs, each on its own lane (thread + one-env shard, sampling/env_lanes.py).
No scheduling here: `reset`/`step` serve the lockstep callers (sync training, evaluation); `start_stream` runs
every env's own episode loop for the async data plane (sampling/env_stream.py)."""

from __future__ import annotations

import time

import numpy as np
import torch
from verl import DataProto
from verl.single_controller.base import Worker
from verl.single_controller.base.decorator import Dispatch, Execute, register

from verl_async_vla.config.schema import EnvConfig, from_dict
from verl_async_vla.envs import EnvSpec
from verl_async_vla.plumbing.process import lower_priority, pin_to_cores, process_info, set_thread_budget
from verl_async_vla.plumbing.wire import split_env_key
from verl_async_vla.sampling.env_lanes import EnvLanes
from verl_async_vla.sampling.env_stream import EnvStream
from verl_async_vla.sampling.lockstep_lanes import LockstepLanes
from verl_async_vla.sampling.stream_peers import StreamPlane
from verl_async_vla.telemetry.calibration import free_run_lane
from verl_async_vla.telemetry.timeline import Span
from verl_async_vla.workers.codec import obs_to_proto, step_to_proto


class EnvWorker(Worker):
    def __init__(self, env_cfg: dict, seed: int, torch_threads: int = 1, niceness: int = 0,
                 cores: list[int] | None = None):  # fmt: skip
        super().__init__()
        set_thread_budget(torch_threads)
        self.cfg: EnvConfig = from_dict(EnvConfig, env_cfg)
        # ranks after env.num_workers' real ones hold imagined envs (env.world_model, world_models/shard.py)
        self.imagined = self.rank >= self.cfg.num_workers and self.cfg.imagined_workers > 0
        self.lanes = EnvLanes(self.cfg, seed=seed * 7919 + self.rank, rank=self.rank, imagined=self.imagined)
        self.lockstep = LockstepLanes(self.lanes)  # sync training and evaluation (sampling/lockstep_lanes.py)
        # after the lanes exist: their threads are reniced and placed too (trainer.env_nice, trainer.cpu_layout)
        lower_priority(niceness)
        pin_to_cores(cores)
        self.stream: EnvStream | None = None
        self.episodes_ended = 0  # lockstep path: episode ends seen here, the producer-side count
        self.episodes_discarded = 0  # lockstep path: episodes lost to an env fault

    @register(dispatch_mode=Dispatch.ALL_TO_ALL, execute_mode=Execute.RANK_ZERO)  # every worker has the same
    def spec(self) -> EnvSpec:
        return self.lanes.spec

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def reset(self, env_ids: np.ndarray | None = None, seeds: np.ndarray | None = None) -> DataProto:
        """Reset `env_ids` of this worker (all when None), in parallel; `seeds` pin layouts (held-out eval)."""
        ids = np.arange(self.lanes.num_envs) if env_ids is None else np.asarray(env_ids)
        return obs_to_proto(self.lockstep.reset(ids, seeds), self.rank, self.imagined)

    @register(dispatch_mode=Dispatch.DP_COMPUTE_PROTO)
    def step(self, data: DataProto) -> DataProto:
        """Execute action chunks for the rows whose `env_key` belongs to this worker and that are `active`; the
        envs step in parallel and the call returns when the slowest is done (the lockstep barrier)."""
        ranks, local = split_env_key(data.non_tensor_batch["env_key"])
        active = data.batch["active"].numpy().astype(bool) & (ranks == self.rank)
        res = self.lockstep.step(local[active], data.batch["actions"][active].numpy())
        lost = res.discarded if res.discarded is not None else np.zeros(len(res.reward), bool)
        self.episodes_ended += int(((res.terminated | res.truncated) & ~lost).sum())
        self.episodes_discarded += int(lost.sum())
        return step_to_proto(res, self.rank, self.imagined)

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def episode_counts(self) -> dict[str, int]:
        """The lockstep producers' own count: episodes ended normally, and lost to an env fault."""
        return {"ended": self.episodes_ended, "discarded": self.episodes_discarded}

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def rng_state(self) -> list:
        """Per env, its shard's layout RNG (None where a backend cannot export it): part of a run checkpoint."""
        return [
            self.lanes.submit(i, self.lanes.shards[i].get_rng_state).result()
            for i in range(self.lanes.num_envs)
        ]

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def set_rng_state(self, states: list) -> None:
        for i, state in enumerate(states):
            if state is not None:
                self.lanes.submit(i, self.lanes.shards[i].set_rng_state, state).result()

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def set_episode_counts(self, counts: dict[str, int]) -> None:
        """A resumed lockstep run: this worker's own counts from the checkpoint (kept apart from the driver's)."""
        self.episodes_ended, self.episodes_discarded = int(counts["ended"]), int(counts["discarded"])

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def fault_report(self) -> dict:
        return self.lanes.fault_report()

    # ---- async data plane -------------------------------------------------------------------------------
    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def start_stream(self, plane: StreamPlane, incarnation: int = 0) -> None:
        """`incarnation`: 0, or how many times this worker's process was restarted (controller/recovery.py)."""
        self.stream = EnvStream(self.lanes, self.rank, plane, incarnation)

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def resend(self, rollout: int, address: tuple[str, int]) -> int:
        """Reconnect to rollout worker `rollout`, restarted at `address`, and re-send the requests it had not
        answered when its process died."""
        return 0 if self.stream is None else self.stream.resend(rollout, address)

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def process_info(self) -> dict:
        return process_info("env", self.rank)

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def oldest_open_version(self) -> int | None:
        return None if self.stream is None else self.stream.oldest_open_version()

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def stream_stats(self) -> dict | None:
        """None: not streaming (a restarted process before it rejoins)."""
        return None if self.stream is None else self.stream.stats()

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def stop_stream(self) -> dict:
        stream, self.stream = self.stream, None
        return {} if stream is None else stream.stop()

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def drain_spans(self) -> list[Span]:
        return self.lanes.drain_spans()

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def calibrate(self, seconds: float, chunk: int, episode_env_steps: int) -> dict:
        """The env stage alone (telemetry/calibration.py): every env on its own lane steps a fixed (zero) action
        chunk for `seconds`, resetting after `episode_env_steps`. -> env steps, the sum of the lanes' own rates
        and this process's CPU seconds."""
        action = np.zeros((chunk, self.lanes.spec.action_dim), dtype=np.float32)

        def lane(env: int) -> tuple[int, float]:
            def step() -> tuple[int, bool]:
                res = self.lanes.step_env(env, action)
                return int(res.env_steps[0]), bool(res.terminated[0] or res.truncated[0])

            return free_run_lane(step, lambda: self.lanes.reset_env(env), seconds, episode_env_steps)

        cpu0 = time.process_time()
        runs = [f.result() for f in [self.lanes.submit(i, lane, i) for i in self.lanes.live()]]
        return {"env_steps": sum(n for n, _ in runs), "env_steps_per_s": sum(n / s for n, s in runs),
                "cpu_s": time.process_time() - cpu0}  # fmt: skip

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def close(self) -> None:
        self.lanes.close()


def actions_for_all_envs(
    env_keys: np.ndarray, active: np.ndarray, actions: torch.Tensor, rows: np.ndarray
) -> DataProto:
    """A step request covering every env (so DP dispatch splits it shard by shard); only `active` rows execute."""
    full = torch.zeros((len(env_keys),) + tuple(actions.shape[1:]), dtype=actions.dtype)
    full[torch.from_numpy(rows)] = actions
    return DataProto.from_dict(
        tensors={"actions": full, "active": torch.from_numpy(active)},
        non_tensors={"env_key": env_keys},
    )
