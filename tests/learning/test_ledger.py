import pytest

from verl_async_vla.learning.ledger import LedgerError, TrajectoryLedger, reconcile

PRODUCED = {1: 3, 2: 4, 3: 5, 4: 6}


def test_independent_counts_reconcile():
    out = reconcile(PRODUCED, received=[1, 2, 3, 4], trained=[1, 4], dropped=[2], queued=[3])
    assert (
        out["episodes_trained"] == 2 and out["episodes_dropped_stale"] == 1 and out["episodes_in_flight"] == 1
    )
    assert out["samples_trained"] == 9 and out["samples_in_flight"] == 5 and out["episodes_unaccounted"] == 0


def test_an_episode_lost_in_transport_is_caught():
    with pytest.raises(LedgerError, match="produced but never received"):
        reconcile(PRODUCED, received=[1, 2, 3], trained=[1, 2, 3], dropped=[], queued=[])


def test_an_episode_the_actor_forgot_is_caught():
    # received but neither trained, dropped nor queued: "in flight = produced - the rest" would have hidden it
    with pytest.raises(LedgerError, match="neither trained, dropped nor queued"):
        reconcile(PRODUCED, received=[1, 2, 3, 4], trained=[1, 2], dropped=[], queued=[3])


def test_double_training_and_two_states_are_caught():
    with pytest.raises(LedgerError, match="more than once"):
        reconcile(PRODUCED, received=[1, 2, 3, 4], trained=[1, 1, 2, 3, 4], dropped=[], queued=[])
    with pytest.raises(LedgerError, match="two states"):
        reconcile(PRODUCED, received=[1, 2, 3, 4], trained=[1, 2, 3, 4], dropped=[4], queued=[])


def test_driver_record_rejects_double_production():
    ledger = TrajectoryLedger()
    ledger.record_produced([(1, 3)])
    with pytest.raises(LedgerError, match="produced twice"):
        ledger.record_produced([(1, 3)])
