"""The embedded world model: recorded data, pre-training, the shard behind the env API, checkpoints."""

import numpy as np
import pytest
import torch

from verl_async_vla.envs.base import HELD_OUT_SEED_BASE
from verl_async_vla.envs.embedded import EmbeddedReachShard
from verl_async_vla.envs.embedded.reach import SHAPING_SCALE, SUCCESS_BONUS
from verl_async_vla.world_models.base import WorldState
from verl_async_vla.world_models.data import WorldModelData, record_episodes
from verl_async_vla.world_models.embedded import EmbeddedWorldModel
from verl_async_vla.world_models.pretrain import pretrain
from verl_async_vla.world_models.registry import load_world_model, save_world_model
from verl_async_vla.world_models.shard import WorldModelShard

SIZE = 32


@pytest.fixture(scope="module")
def data() -> WorldModelData:
    shard = EmbeddedReachShard(4, SIZE, 12, seed=3)
    try:
        return record_episodes(shard, 40, 4, np.random.default_rng(0))
    finally:
        shard.close()


def small_model() -> EmbeddedWorldModel:
    torch.manual_seed(0)
    return EmbeddedWorldModel(image_size=SIZE, channels=8, hidden=32, dtype="float32")


def test_recorded_episodes_are_consistent(data, tmp_path):
    assert data.episodes == 40
    assert len(data.frames) == len(data.actions) + data.episodes  # T + 1 frames per episode of T decisions
    frames, decisions, owner = data.transitions()
    assert len(frames) == len(decisions) == len(data.actions)
    # an episode ends exactly at its last decision: success or the time limit, never in the middle
    for e in range(data.episodes):
        last = data.ep_start[e] - e + data.ep_len[e] - 1
        steps = data.env_steps[data.ep_start[e] - e : last + 1].sum()
        assert data.success[last] or steps == 12
        assert not data.success[data.ep_start[e] - e : last].any()
    # the recorded potential is the one the env's reward shapes, frame for frame (an off-by-one would break it)
    shaped = SHAPING_SCALE * (data.goal_distance[frames] - data.goal_distance[frames + 1])
    np.testing.assert_allclose(
        data.reward[decisions], shaped + SUCCESS_BONUS * data.success[decisions], atol=1e-4
    )
    # the noisy expert covers several noise scales
    assert len(set(data.behaviour.tolist())) > 1
    back = WorldModelData.load(data.save(tmp_path / "d.npz"))
    assert np.array_equal(back.frames, data.frames) and back.instruction.tolist() == data.instruction.tolist()
    train, held = data.split()
    assert not set(train) & set(held) and len(train) + len(held) == data.episodes


def test_missing_dataset_names_the_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="world_models.pretrain"):
        WorldModelData.load(tmp_path / "nope.npz")


def test_pretraining_lowers_held_out_loss(data):
    model, report = pretrain(data, steps=120, batch_size=16, lr=2e-3, unroll=2, seed=0, model=small_model())
    before, after = report["held_out_before"]["one_step"], report["held_out_after"]["one_step"]
    assert after["loss"] < 0.7 * before["loss"]
    assert after["state_mse"] < before["state_mse"]
    assert after["potential_mae"] < 0.7 * before["potential_mae"]
    assert report["held_out_after"]["open_loop"]["1"]["episodes"] == len(data.split()[1])
    assert model.version == 1


def test_shard_steps_like_an_env(data):
    model = small_model().eval()
    shard = WorldModelShard(model, data, num_envs=3, max_episode_steps=12, seed=0)
    obs = shard.reset(np.arange(3))
    starts = {data.frames[s].tobytes() for s in data.ep_start}
    assert all(img.tobytes() in starts for img in obs.image)  # resets come from stored real first frames
    assert obs.image.shape == (3, SIZE, SIZE, 3) and obs.image.dtype == np.uint8
    total = np.zeros(3, np.int64)
    for _ in range(3):
        res = shard.step(np.arange(3), np.zeros((3, 4, 2), np.float32))
        total += res.env_steps
        if (res.terminated | res.truncated).any():
            break
    assert (total <= 12).all() and (res.env_steps <= 4).all()
    with pytest.raises(ValueError, match="action_dim"):
        shard.step(np.arange(1), np.zeros((1, 4, 3), np.float32))


def test_shard_truncates_at_the_time_limit(data):
    model = small_model().eval()
    with (
        torch.no_grad()
    ):  # never declares success (logit, or the potential within reach): only the time limit
        model.heads[-1].bias[model.state_dim] = -50.0
        model.potential[-2].bias.fill_(50.0)
    shard = WorldModelShard(model, data, num_envs=2, max_episode_steps=10, seed=0)
    shard.reset(np.arange(2))
    steps = [shard.step(np.arange(2), np.zeros((2, 4, 2), np.float32)) for _ in range(3)]
    assert [int(s.env_steps[0]) for s in steps] == [4, 4, 2]  # the last chunk is cut at the limit
    assert steps[-1].truncated.all() and not steps[1].truncated.any()
    with pytest.raises(RuntimeError, match="reset"):
        shard.step(np.arange(1), np.zeros((1, 4, 2), np.float32))


def test_evaluation_never_uses_the_world_model(data):
    shard = WorldModelShard(small_model().eval(), data, num_envs=1, max_episode_steps=12, seed=0)
    with pytest.raises(ValueError, match="real simulator"):
        shard.reset(np.arange(1), seeds=np.array([HELD_OUT_SEED_BASE + 5]))


def test_checkpoint_round_trip(data, tmp_path):
    model = small_model().eval()
    model.version = 4
    path = save_world_model(tmp_path / "wm.safetensors", model)
    back = load_world_model(path)
    ctx = WorldState(data.frames[:2], data.states[:2], data.instruction[:2].tolist())
    act = data.actions[:2]
    a, b = model.predict(ctx, act), back.predict(ctx, act)
    assert np.array_equal(a.image, b.image) and np.allclose(a.reward, b.reward) and back.version == 4
    with pytest.raises(ValueError, match="pre-trained on another env config"):
        back.predict(WorldState(np.zeros((1, 16, 16, 3), np.uint8), data.states[:1], ["x"]), act[:1])
    (tmp_path / "junk.safetensors").write_bytes(b"not a file")
    with pytest.raises(FileNotFoundError, match="pretrain"):
        load_world_model(tmp_path / "missing.safetensors")
