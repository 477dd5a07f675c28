"""The emulated env: episode structure only (its timing comes from the latency wrapper)."""

import numpy as np

from verl_async_vla.envs.emulated import EmulatedShard


def test_episodes_end_within_the_horizon_with_consistent_flags():
    shard = EmulatedShard(num_envs=64, image_size=8, max_episode_steps=40, seed=0)
    obs = shard.reset(np.arange(64))
    assert obs.image.shape == (64, 8, 8, 3) and obs.state.shape == (64, 4)
    ids, lengths = np.arange(64), np.zeros(64, dtype=int)
    while len(ids):
        res = shard.step(ids, np.zeros((len(ids), 4, 2)))
        lengths[ids] += res.env_steps
        done = res.terminated | res.truncated
        assert not (res.terminated & res.truncated).any() and (res.reward == res.success).all()
        ids = ids[~done]
    assert lengths.min() >= 10 and lengths.max() <= 40 and len(set(lengths.tolist())) > 5
