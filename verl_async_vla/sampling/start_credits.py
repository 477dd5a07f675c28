"""Episode-start credits on the env-worker side: an env may reset into a new episode only with a credit from the
staleness gate (learning/staleness.py, `GateServer`), which is how `pause` mode bounds how far producers run ahead.

The worker's credits thread asks the gate for as many credits as its lanes wait for, plus `CREDIT_SPARE` kept in
hand: an env whose episode ends starts its reset at once instead of after a round trip to the gate (measured on the
longtail workload, 2 cores: median 9-10 ms between an episode's last step and the next reset without the spare,
0.2 ms with it). A spare is counted as granted by the gate, like an open episode's credit, so the lag bound is
unchanged; a dead worker's spare goes back to the gate with its other credits (controller/recovery.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

CREDIT_SPARE = 1  # start credits held beyond what the lanes wait for


class StartCredits:
    """`fetch(want) -> granted`: one call to the gate, which answers when it can grant some (0 after its timeout)."""

    def __init__(self, fetch: Callable[[int], int], stopping: threading.Event, spare: int = CREDIT_SPARE):
        self.fetch, self.stopping, self.spare = fetch, stopping, spare
        self.cond = threading.Condition()
        self.held = 0  # granted by the gate, not yet used by a lane
        self.waiters = 0  # lanes waiting for a credit right now
        # per episode start: how long its lane waited, and whether a credit was already in hand (no wait at all)
        self.starts = {"episodes": 0, "wait_s": 0.0, "in_hand": 0}

    def acquire(self) -> bool:
        """Block the calling lane until it holds a credit (True), or until the worker stops (False)."""
        t0 = time.monotonic()
        with self.cond:
            in_hand = self.held > 0
            self.waiters += 1
            self.cond.notify_all()
            while self.held == 0 and not self.stopping.is_set():
                self.cond.wait(0.1)
            self.waiters -= 1
            if self.stopping.is_set():
                return False
            self.starts["episodes"] += 1  # only waits that led to an episode: a stop is not a start
            self.starts["wait_s"] += time.monotonic() - t0
            self.starts["in_hand"] += int(in_hand)
            self.held -= 1
            self.cond.notify_all()  # the spare was used: the credits thread fetches the next one meanwhile
            return True

    def run(self) -> None:
        """The credits thread: keep `waiters + spare` credits in hand, asking the gate for what is missing."""
        while not self.stopping.is_set():
            with self.cond:
                while self.waiters + self.spare <= self.held and not self.stopping.is_set():
                    self.cond.wait(0.1)
                want = self.waiters + self.spare - self.held
            if want <= 0:
                continue
            granted = self.fetch(want)
            with self.cond:
                self.held += granted
                self.cond.notify_all()

    def stats(self) -> dict[str, float]:
        with self.cond:
            return {**self.starts, "unused": self.held}
