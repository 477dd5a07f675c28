import numpy as np
import pytest

from verl_async_vla.envs.embedded import EmbeddedReachShard
from verl_async_vla.envs.embedded.reach import COLOURS


def rollout_expert(shard, episodes, ignore_instruction=False):
    ids_all = np.arange(shard.num_envs)
    success, n = 0, 0
    for _ in range(episodes // shard.num_envs):
        shard.reset(ids_all)
        ids = ids_all
        while len(ids):
            res = shard.step(ids, shard.expert_actions(ids, 4, ignore_instruction))
            done = res.terminated | res.truncated
            success += int(res.success.sum())
            n += int(done.sum())
            ids = ids[~done]
    return success / n


def test_same_seed_gives_identical_observations_and_rewards():
    a, b = EmbeddedReachShard(3, image_size=32, seed=7), EmbeddedReachShard(3, image_size=32, seed=7)
    ids = np.arange(3)
    oa, ob = a.reset(ids), b.reset(ids)
    assert np.array_equal(oa.image, ob.image) and oa.instruction == ob.instruction
    act = np.random.default_rng(0).uniform(-1, 1, size=(3, 4, 2)).astype(np.float32)
    ra, rb = a.step(ids, act), b.step(ids, act)
    assert np.array_equal(ra.obs.image, rb.obs.image)
    assert np.array_equal(ra.reward, rb.reward) and np.array_equal(ra.obs.state, rb.obs.state)


def test_different_seeds_give_different_layouts():
    a, b = EmbeddedReachShard(2, image_size=32, seed=1), EmbeddedReachShard(2, image_size=32, seed=2)
    assert not np.array_equal(a.reset(np.arange(2)).image, b.reset(np.arange(2)).image)


def test_explicit_seeds_pin_the_layout_regardless_of_history():
    shard = EmbeddedReachShard(2, image_size=32, seed=0)
    first = shard.reset(np.array([0]), seeds=np.array([123]))
    shard.reset(np.arange(2))
    again = shard.reset(np.array([1]), seeds=np.array([123]))
    assert np.array_equal(first.image, again.image) and first.instruction == again.instruction


def test_batched_subset_reset_and_step_shapes():
    shard = EmbeddedReachShard(4, image_size=32, seed=0)
    obs = shard.reset(np.arange(4))
    assert obs.image.shape == (4, 32, 32, 3) and obs.image.dtype == np.uint8
    assert obs.state.shape == (4, 4) and len(obs.instruction) == 4
    res = shard.step(np.array([1, 3]), np.zeros((2, 4, 2), np.float32))
    assert res.obs.image.shape == (2, 32, 32, 3) and list(res.obs.env_ids) == [1, 3]
    assert res.reward.shape == (2,) and (res.env_steps == 4).all()


def test_instruction_names_a_cube_and_goal_is_not_in_state():
    shard = EmbeddedReachShard(8, image_size=32, seed=3)
    obs = shard.reset(np.arange(8))
    assert all(any(c in text for c in ("red", "green", "blue")) for text in obs.instruction)
    assert obs.state.shape[1] == 4  # end-effector position and velocity only


def test_wrong_action_shape_names_the_fix():
    shard = EmbeddedReachShard(2, image_size=32)
    shard.reset(np.arange(2))
    with pytest.raises(ValueError, match="model.action_dim=2"):
        shard.step(np.arange(2), np.zeros((2, 4, 7), np.float32))


def test_stepping_a_finished_episode_is_an_error():
    shard = EmbeddedReachShard(1, image_size=32, max_episode_steps=4)
    shard.reset(np.arange(1))
    res = shard.step(np.arange(1), np.zeros((1, 4, 2), np.float32))
    assert res.truncated[0]
    with pytest.raises(RuntimeError, match="reset"):
        shard.step(np.arange(1), np.zeros((1, 4, 2), np.float32))


def test_expert_solves_the_task_and_instruction_blind_policy_is_near_chance():
    shard = EmbeddedReachShard(8, image_size=32, seed=11)
    assert rollout_expert(shard, 48) > 0.95
    blind = rollout_expert(shard, 96, ignore_instruction=True)
    assert 0.2 < blind < 0.6  # reaching one fixed cube: ~1/3 plus incidental touches on the way


def test_the_hard_variant_has_five_cubes_named_by_its_instructions_and_lower_chance():
    """env=embedded_reach_hard (env.reach.cubes=5): every colour on the table is asked for, the expert still
    solves it, and an instruction-blind policy does worse than on 3 cubes (chance ~1/5 plus touches)."""
    shard = EmbeddedReachShard(8, image_size=32, seed=11, cubes=5)
    colours = set()
    for _ in range(6):
        obs = shard.reset(np.arange(8))
        colours |= {w for text in obs.instruction for w in text.split() if w in COLOURS}
    assert colours == set(COLOURS)
    assert len(shard.envs[0].cube_qpos) == 5
    assert rollout_expert(shard, 48) > 0.95
    assert rollout_expert(shard, 96, ignore_instruction=True) < 0.35


@pytest.mark.parametrize("cubes", [2, 6])
def test_a_cube_count_out_of_range_names_the_key(cubes):
    with pytest.raises(ValueError, match="env.reach.cubes"):
        EmbeddedReachShard(2, image_size=32, cubes=cubes)
