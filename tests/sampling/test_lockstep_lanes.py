"""The lockstep view of the env lanes (sampling/lockstep_lanes.py): several envs reset or stepped at once, each on
its own lane, in parallel."""

import numpy as np

from verl_async_vla.config.schema import EnvConfig
from verl_async_vla.sampling.env_lanes import EnvLanes
from verl_async_vla.sampling.lockstep_lanes import LockstepLanes


def lanes(latency: str, n: int = 3) -> EnvLanes:
    return EnvLanes(
        EnvConfig(num_envs_per_worker=n, image_size=32, max_episode_steps=8, latency=latency), 0, 0
    )


def test_lockstep_step_runs_envs_in_parallel():
    envs = lanes("uniform", n=4)  # 10 ms per control step, 4-step chunks: 40 ms per env
    try:
        LockstepLanes(envs).reset(np.arange(4))
        envs.drain_spans()
        LockstepLanes(envs).step(np.arange(4), np.zeros((4, 4, 2), np.float32))
        steps = [s for s in envs.drain_spans() if s.kind == "step"]
        assert len(steps) == 4 and len({s.worker for s in steps}) == 4
        # run one after another, the first would end before the last starts
        assert max(s.start for s in steps) < min(s.end for s in steps)
    finally:
        envs.close()
