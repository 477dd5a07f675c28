import numpy as np
import pytest

from verl_async_vla.sampling.trajectory import Episode, episodes_to_proto


def make_episode(eid, n, success=False, imagined=False, env_steps=None):
    ep = Episode(eid, env_key=eid, instruction=f"reach the red cube {eid}", imagined=imagined)
    for t in range(n):
        ep.image.append(np.full((8, 8, 3), t, np.uint8))
        ep.state.append(np.full(4, t, np.float32))
        ep.actions.append(np.full((2, 2), t, np.float32))
        ep.log_prob.append(-1.0 * t)
        ep.value.append(0.1 * t)
        ep.reward.append(1.0)
        ep.version.append(3)
    ep.env_steps, ep.success = 2 * n if env_steps is None else env_steps, success
    return ep


def test_episodes_pad_to_horizon_with_a_mask():
    proto = episodes_to_proto([make_episode(1, 2), make_episode(2, 4, True)], horizon=4)
    assert proto.batch["image"].shape == (2, 4, 8, 8, 3)
    assert proto.batch["mask"].tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]]
    assert proto.batch["rewards"][0].tolist() == [1, 1, 0, 0]  # no reward leaks into padding
    assert proto.batch["image"][0, 3, 0, 0, 0] == 1  # padding repeats the last observation
    assert proto.non_tensor_batch["success"].tolist() == [False, True]
    assert proto.batch["policy_version"].unique().tolist() == [3]


def test_episode_longer_than_horizon_is_rejected():
    with pytest.raises(ValueError, match="horizon"):
        episodes_to_proto([make_episode(1, 5)], horizon=4)


def traced(ep, width=5):
    ep.trace = [np.full(width, t, np.float32) for t in range(len(ep))]
    return ep


def test_the_action_trace_travels_only_when_the_episodes_have_one():
    assert "action_trace" not in episodes_to_proto([make_episode(1, 2)], horizon=4).batch.keys()
    proto = episodes_to_proto([traced(make_episode(1, 2)), traced(make_episode(2, 3))], horizon=4)
    assert proto.batch["action_trace"].shape == (2, 4, 5)
    assert proto.batch["action_trace"][1, :, 0].tolist() == [0, 1, 2, 2]  # padded like the actions


def test_episodes_with_and_without_a_trace_are_refused_in_one_batch():
    with pytest.raises(ValueError, match="action heads"):
        episodes_to_proto([traced(make_episode(1, 2)), make_episode(2, 3)], horizon=4)


def test_episode_metrics_keep_imagined_episodes_apart():
    """`train/success` is the real simulator's; a world model's episodes (which succeed when the model says so) are
    reported as `train/imagined_*` and never mixed in."""
    from verl_async_vla.sampling.trajectory import episode_metrics

    def ep(i: int, success: bool, imagined: bool, steps: int):
        return make_episode(i, 2, success, imagined, steps)

    batch = episodes_to_proto(
        [ep(0, False, False, 8), ep(1, True, False, 4), ep(2, True, True, 2)], horizon=3
    )
    m = episode_metrics(batch)
    assert m["train/success"] == 0.5 and m["train/episode_len"] == 6.0
    assert m["train/imagined_success"] == 1.0 and m["train/imagined_episode_len"] == 2.0
    real_only = episode_metrics(episodes_to_proto([ep(0, True, False, 8)], horizon=3))
    assert real_only["train/success"] == 1.0 and not any("imagined" in k for k in real_only)
