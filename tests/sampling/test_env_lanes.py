"""Env lanes: one thread and one one-env shard per env, so a slow env holds only itself (no Ray involved)."""

import threading
import time

import numpy as np

from verl_async_vla.config.schema import EnvConfig
from verl_async_vla.sampling.env_lanes import EnvLanes
from verl_async_vla.sampling.lockstep_lanes import LockstepLanes


def lanes(latency: str, n: int = 3) -> EnvLanes:
    return EnvLanes(
        EnvConfig(num_envs_per_worker=n, image_size=32, max_episode_steps=8, latency=latency), 0, 0
    )


def test_siblings_finish_episodes_while_one_env_resets_for_a_second():
    envs = lanes("reset_straggler")  # global env 0 resets in 1 s, the others at once
    try:
        LockstepLanes(envs).reset(np.array([1, 2]))
        slow = envs.submit(0, envs.reset_env, 0)
        finished = {1: 0, 2: 0}

        def play(env: int) -> None:
            while not slow.done():
                res = envs.step_env(env, np.zeros((4, 2), np.float32))
                if res.terminated[0] or res.truncated[0]:
                    finished[env] += 1
                    envs.reset_env(env)

        threads = [envs.submit(e, play, e) for e in (1, 2)]
        t0 = time.monotonic()
        slow.result()
        assert time.monotonic() - t0 >= 0.9
        for t in threads:
            t.result()
        assert finished[1] >= 2 and finished[2] >= 2, (
            finished
        )  # 8-step episodes at 5 ms a step: dozens in 1 s
    finally:
        envs.close()


def test_each_env_always_runs_on_its_own_thread():
    envs = lanes("none", n=2)
    try:
        names = {envs.submit(e, lambda: threading.current_thread().name).result() for e in (0, 1, 0, 1)}
        assert len(names) == 2
        res = (
            LockstepLanes(envs).step(np.array([0, 1]), np.zeros((2, 4, 2), np.float32))
            if LockstepLanes(envs).reset(np.array([0, 1]))
            else None
        )
        assert res.obs.env_ids.tolist() == [0, 1] and res.obs.image.shape == (2, 32, 32, 3)
    finally:
        envs.close()
