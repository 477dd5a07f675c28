"""The generic gymnasium adapter on a real MuJoCo task (Reacher-v5). Skipped when gymnasium[mujoco] is absent."""

import importlib.util

import numpy as np
import pytest

from verl_async_vla.config.schema import EnvConfig
from verl_async_vla.envs.gymnasium.shard import resize_nearest

needs_gym = pytest.mark.skipif(
    importlib.util.find_spec("gymnasium") is None or importlib.util.find_spec("imageio") is None,
    reason="gymnasium[mujoco] not installed: pip install 'verl-async-vla[gymnasium]'",
)


def test_resize_nearest_keeps_blocks():
    img = np.zeros((4, 4, 3), dtype=np.uint8)
    img[:2, :2] = 255
    out = resize_nearest(img, 8)
    assert out.shape == (8, 8, 3) and out[:4, :4].min() == 255 and out[4:, :].max() == 0


@needs_gym
def test_reacher_shard_shapes_seeding_and_action_mapping():
    from verl_async_vla.envs import make_env_shard

    cfg = EnvConfig(
        name="gymnasium", num_workers=1, num_envs_per_worker=2, image_size=32, max_episode_steps=8
    )
    shard = make_env_shard(cfg, seed=0)
    try:
        assert shard.spec.image_shape == (32, 32, 3) and (shard.spec.state_dim, shard.spec.action_dim) == (
            10,
            2,
        )
        seeds = np.array([5, 6])
        a, b = shard.reset(np.arange(2), seeds), shard.reset(np.arange(2), seeds)
        assert np.array_equal(a.state, b.state) and not np.array_equal(a.state[0], a.state[1])
        assert a.image.shape == (2, 32, 32, 3) and a.instruction == ["reach the target"] * 2
        assert shard.reset(np.zeros(0, dtype=np.int64)).image.shape == (0, 32, 32, 3)
        steps = []
        while True:
            res = shard.step(np.arange(2), np.ones((2, 3, 2)))  # +1 maps onto the Box's upper bound
            steps.append(res.env_steps)
            if res.truncated.all():
                break
        assert np.concatenate(steps).reshape(-1, 2).sum(0).tolist() == [8, 8]  # chunks stop at the limit
        assert (res.reward < 0).all()  # Reacher pays distance and control costs
    finally:
        shard.close()


@needs_gym
def test_discrete_action_env_is_rejected_with_the_reason():
    from verl_async_vla.envs import make_env_shard

    cfg = EnvConfig(name="gymnasium", num_envs_per_worker=1)
    cfg.gymnasium.env_id = "CartPole-v1"
    with pytest.raises(ValueError, match="Box action space"):
        make_env_shard(cfg, seed=0)


@needs_gym
def test_rng_state_makes_a_resumed_shard_draw_the_same_layouts():
    from verl_async_vla.envs import make_env_shard

    cfg = EnvConfig(
        name="gymnasium", num_workers=1, num_envs_per_worker=2, image_size=16, max_episode_steps=4
    )
    shard = make_env_shard(cfg, seed=3)
    try:
        shard.reset(np.arange(2))
        state = shard.get_rng_state()
        expected = shard.reset(np.arange(2)).state
        shard.reset(np.arange(2))
        shard.set_rng_state(state)
        assert np.array_equal(shard.reset(np.arange(2)).state, expected)
    finally:
        shard.close()
