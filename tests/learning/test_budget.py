import pytest

from verl_async_vla.learning.budget import episodes_for_budget


def test_before_any_training_the_longest_episode_is_assumed():
    # 1000 env steps at 40 steps an episode = 25 episodes -> 2 batches of 16
    assert episodes_for_budget(1000, 0, 0, batch_episodes=16, max_episode_steps=40) == 32


def test_the_cap_follows_the_mean_trained_episode_length():
    # 16 episodes trained, 320 steps (20 each): 680 steps left = 34 episodes -> 3 more batches
    assert episodes_for_budget(1000, 320, 16, batch_episodes=16, max_episode_steps=40) == 16 + 48


def test_a_met_budget_needs_no_more_episodes():
    assert episodes_for_budget(1000, 1010, 50, batch_episodes=16, max_episode_steps=40) == 50


def test_an_update_that_took_more_than_a_batch_is_counted_by_its_episodes():
    # must-train stragglers: 20 episodes in the first update, not 16
    assert episodes_for_budget(1000, 400, 20, batch_episodes=16, max_episode_steps=40) == 20 + 32


def test_bad_batch_size_is_refused():
    with pytest.raises(ValueError, match="batch_episodes"):
        episodes_for_budget(1000, 0, 0, batch_episodes=0, max_episode_steps=40)
