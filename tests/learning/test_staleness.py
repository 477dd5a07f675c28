import pytest

from verl_async_vla.learning.staleness import StalenessGate


def test_pause_grants_s_plus_one_batches_of_starts_per_version():
    gate = StalenessGate(max_staleness=1, policy="pause", train_batch_episodes=4)
    assert gate.grant(100) == 8  # version 0: (0 + 1 + 1) x 4 episode starts
    assert gate.grant(1) == 0  # producers pause: two batches are already on their way
    gate.advance(1)
    assert gate.grant(100) == 4  # each new version opens one more batch
    gate.release(2)  # two discarded episodes give their credits back
    assert gate.grant(100) == 2


def test_s0_is_on_policy_one_batch_per_version():
    gate = StalenessGate(max_staleness=0, policy="pause", train_batch_episodes=4)
    assert gate.grant(10) == 4 and gate.grant(10) == 0


def test_must_train_is_the_last_version_an_episode_can_be_trained_at():
    gate = StalenessGate(max_staleness=2, policy="pause", train_batch_episodes=4)
    # trained with weights 7: oldest decision at 5 is lag 2 (allowed), and at 8 it would be lag 3
    assert gate.must_train(5, actor_version=7) and not gate.must_train(6, actor_version=7)
    assert not gate.too_old(5, actor_version=7) and gate.too_old(4, actor_version=7)


def test_drop_policy_never_pauses_and_drops_what_is_too_old():
    gate = StalenessGate(max_staleness=1, policy="drop", train_batch_episodes=4)
    assert gate.grant(10**6) == 10**6
    assert not gate.too_old(4, actor_version=5) and gate.too_old(3, actor_version=5)


def test_bad_gate_config_names_the_key():
    with pytest.raises(ValueError, match="stale_policy"):
        StalenessGate(1, "wait", 4)
    with pytest.raises(ValueError, match="max_staleness"):
        StalenessGate(-1, "pause", 4)


def test_a_resumed_gate_counts_credits_from_its_start_version():
    gate = StalenessGate(max_staleness=1, policy="pause", train_batch_episodes=4, start_version=50)
    assert gate.grant(100) == 8  # the same start budget as a fresh run, not 50 versions' worth
    gate.advance(51)
    assert gate.grant(100) == 4


def test_the_budget_cap_stops_starts_below_the_staleness_allowance():
    gate = StalenessGate(max_staleness=1, policy="pause", train_batch_episodes=4)
    gate.set_episode_cap(6)  # the budget needs 6 episodes in all; staleness alone would allow 8
    assert gate.grant(100) == 6 and gate.grant(1) == 0
    gate.release(1)  # a discarded episode is replaced: the budget still needs it
    assert gate.grant(100) == 1
    gate.set_episode_cap(3)  # a cap below what was granted grants nothing (and never a negative amount)
    assert gate.available() == 0 and gate.grant(5) == 0


def test_the_budget_cap_also_bounds_drop_mode():
    gate = StalenessGate(max_staleness=1, policy="drop", train_batch_episodes=4)
    gate.set_episode_cap(10)
    assert gate.grant(100) == 10 and gate.grant(1) == 0
