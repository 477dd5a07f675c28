"""Episode-start credits (sampling/start_credits.py) against a scripted gate: a plain function standing in for the
`GateServer.acquire` call, so what the worker asks for and when is visible."""

import threading

import pytest

from verl_async_vla.sampling.start_credits import CREDIT_SPARE, StartCredits


class ScriptedGate:
    """Grants what is asked while open; while closed, answers 0 after a short wait (as the real gate's timeout)."""

    def __init__(self):
        self.open = threading.Event()
        self.open.set()
        self.asked: list[int] = []
        self.granted = 0

    def acquire(self, want: int) -> int:
        self.asked.append(want)
        if not self.open.wait(0.02):
            return 0
        self.granted += want
        return want


def started(gate: ScriptedGate, spare: int) -> tuple[StartCredits, threading.Event, threading.Thread]:
    stopping = threading.Event()
    credits = StartCredits(gate.acquire, stopping, spare=spare)
    thread = threading.Thread(target=credits.run, daemon=True)
    thread.start()
    return credits, stopping, thread


def settled(credits: StartCredits, held: int) -> bool:
    """Wait (bounded) until the credits thread has filled the hand: a condition, not a timing claim."""
    with credits.cond:
        return credits.cond.wait_for(lambda: credits.held == held, timeout=5.0)


def acquired_within(credits: StartCredits, seconds: float) -> bool:
    """acquire() on a lane-like thread: True if it returned a credit within `seconds` (a failing check, not a hang)."""
    got: list[bool] = []
    lane = threading.Thread(target=lambda: got.append(credits.acquire()), daemon=True)
    lane.start()
    lane.join(timeout=seconds)
    return got == [True]


@pytest.mark.parametrize("spare", [CREDIT_SPARE, 0], ids=["default", "no_spare"])
def test_a_finished_episode_resets_on_a_credit_already_in_hand(spare):
    gate = ScriptedGate()
    credits, stopping, thread = started(gate, spare)
    try:
        assert settled(credits, spare)  # the worker fills its hand before any lane asks
        for _ in range(4):  # episodes of this worker, one after the other
            assert credits.acquire()
            assert settled(credits, spare)
    finally:
        stopping.set()
        thread.join(timeout=5)
    stats = credits.stats()
    assert stats["episodes"] == 4
    # with the spare every start found its credit in hand; without it none could (this is the check that fails if
    # the spare is removed)
    assert stats["in_hand"] == (4 if spare == CREDIT_SPARE else 0)
    # what the worker holds is what the gate granted minus what lanes used: nothing is created here
    assert gate.granted == stats["episodes"] + stats["unused"]


def test_a_closed_gate_stops_new_episodes_and_the_hand_never_exceeds_waiters_plus_spare():
    gate = ScriptedGate()
    credits, stopping, thread = started(gate, CREDIT_SPARE)
    try:
        assert credits.acquire() and settled(credits, CREDIT_SPARE)
        gate.open.clear()  # the actor fell behind: the gate pauses producers
        assert acquired_within(credits, 5.0)  # the spare still lets one episode start
        blocked = threading.Thread(target=credits.acquire, daemon=True)
        blocked.start()
        blocked.join(timeout=0.3)
        assert blocked.is_alive(), "a lane started an episode while the gate granted nothing"
        with credits.cond:
            assert credits.held == 0 and credits.waiters == 1
        gate.open.set()
        blocked.join(timeout=5)
        assert not blocked.is_alive()
    finally:
        stopping.set()
        thread.join(timeout=5)
    assert max(gate.asked) <= 1 + CREDIT_SPARE  # never more than the lanes waiting plus the spare
    assert not credits.acquire()  # after a stop, no lane starts an episode
    assert credits.stats()["episodes"] == 3
