"""Who an env worker's episode loops talk to besides their rollout workers: the staleness gate (start credits) and
the actor (finished episodes). `EnvStream` (sampling/env_stream.py) reaches them only through `StreamPeers`, so it
runs in-process in tests with plain objects in their place (tests/sampling/test_env_stream.py); in a run they are
Ray handles (`RayStreamPeers`). The rollout workers are reached over the request channel, which needs no Ray.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import ray
from ray.actor import ActorHandle
from verl import DataProto

from verl_async_vla.sampling.request_channel import Address


@dataclass
class StreamPlane:
    """Who an env worker talks to in the async data plane (passed once at start)."""

    rollouts: list[Address]  # the rollout workers' request channels (recovery updates a restarted one's)
    authkey: bytes  # the run's secret for the request channel: a connection without it is refused
    actor: ActorHandle  # ActorWorker rank 0
    gate: ActorHandle  # GateServer (learning/staleness.py)
    horizon: int  # decisions per episode at most (padding length)


class StreamPeers(Protocol):
    def acquire(self, want: int, worker: str) -> int:
        """Ask the gate for up to `want` episode-start credits; blocks until it grants some. -> how many (0 after
        the gate's timeout)."""

    def release(self, episodes: int, worker: str) -> None:
        """Credits of episodes that will never be trained (lost to a fault) go back to the gate."""

    def push(self, episodes: DataProto) -> Any:
        """Send finished episodes to the actor, without waiting. -> a handle for `received`."""

    def received(self, pushes: list[Any], wait: bool = False) -> list[Any]:
        """Which of `pushes` the actor has received (all of them, waiting, when `wait`); a push that failed raises:
        an episode is never lost silently."""


class RayStreamPeers:
    """`StreamPeers` over a run's Ray handles (the plane's gate and actor)."""

    def __init__(self, plane: StreamPlane):
        self.plane = plane

    def acquire(self, want: int, worker: str) -> int:
        return ray.get(self.plane.gate.acquire.remote(want, worker=worker))

    def release(self, episodes: int, worker: str) -> None:
        self.plane.gate.release.remote(episodes, worker)

    def push(self, episodes: DataProto) -> ray.ObjectRef:
        return self.plane.actor.push.remote(episodes)

    def received(self, pushes: list[ray.ObjectRef], wait: bool = False) -> list[ray.ObjectRef]:
        done = pushes if wait else ray.wait(pushes, num_returns=len(pushes), timeout=0)[0]
        ray.get(done)  # raises the push's own error
        return done
