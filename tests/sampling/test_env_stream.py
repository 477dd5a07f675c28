"""The env side of the async data plane (sampling/env_stream.py) in-process, without Ray: real embedded envs on their
lanes, a real inference server answering over the real request channel with a real tiny policy, and plain fakes of
the gate (start credits) and the actor (pushes). The producer's ledger is checked against what the fake actor
received, counted on its side."""

import threading
import time

import numpy as np
import pytest
import torch
from verl import DataProto

from verl_async_vla.config.schema import EnvConfig, ModelConfig
from verl_async_vla.models import build_policy
from verl_async_vla.sampling.env_lanes import EnvLanes
from verl_async_vla.sampling.env_stream import EnvStream
from verl_async_vla.sampling.inference_server import InferenceServer
from verl_async_vla.sampling.stream_peers import StreamPlane
from verl_async_vla.workers.codec import rows_to_policy_obs

ENV = EnvConfig(num_workers=1, num_envs_per_worker=2, image_size=16, max_episode_steps=8)
MODEL = ModelConfig(image_size=16, channels=4, hidden=16, text_dim=8, chunk=2, init="scratch")
HORIZON = 4  # max_episode_steps / chunk
AUTHKEY = b"test-env-stream"


class Policy:
    """The rollout side: a real tiny policy behind the inference server, answering with `version`."""

    def __init__(self):
        torch.manual_seed(0)
        self.model, self.version, self.lock = build_policy(MODEL).eval(), 0, threading.RLock()

    def act_rows(self, rows):
        with torch.no_grad():
            out = self.model.act(rows_to_policy_obs(rows))
        n = out.actions.shape[0]
        return {"actions": out.actions.numpy(), "old_log_prob": out.log_prob.numpy(), "values": out.value.numpy(),
                "policy_version": np.full(n, self.version, dtype=np.int64)}  # fmt: skip


class FakePeers:
    """The gate and the actor as plain objects. The gate grants `credits` episode starts in all; the actor keeps
    every push (counted here, apart from the producer's own count) and can be told to fail them."""

    def __init__(self, credits: int, fail_pushes: bool = False):
        self.lock = threading.Lock()
        self.left, self.granted, self.released = credits, 0, 0
        self.pushed: list[DataProto] = []
        self.fail_pushes = fail_pushes

    def acquire(self, want: int, worker: str) -> int:
        with self.lock:
            n = min(want, self.left)
            self.left -= n
            self.granted += n
        if n == 0:
            time.sleep(0.02)  # the gate's timeout: nothing granted
        return n

    def release(self, episodes: int, worker: str) -> None:
        with self.lock:
            self.released += episodes

    def push(self, episodes: DataProto) -> int:
        with self.lock:
            self.pushed.append(episodes)
            return len(self.pushed) - 1

    def received(self, pushes: list, wait: bool = False) -> list:
        if self.fail_pushes:
            raise RuntimeError("push lost (fault injection)")
        return list(pushes)

    def episodes(self) -> dict[int, DataProto]:
        with self.lock:
            parts = list(self.pushed)
        return {int(i): p for p in parts for i in p.non_tensor_batch["episode_id"]}


@pytest.fixture
def plane():
    policy = Policy()
    server = InferenceServer(policy.act_rows, policy.lock, 0, max_batch=8, max_wait_s=0.0, host="127.0.0.1",
                             authkey=AUTHKEY)  # fmt: skip
    lanes = EnvLanes(ENV, seed=0, rank=0)
    yield policy, StreamPlane([server.address], AUTHKEY, actor=None, gate=None, horizon=HORIZON), lanes
    server.stop()
    lanes.close()


def wait_for(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_every_credited_episode_reaches_the_actor_once_and_both_sides_count_the_same(plane):
    policy, stream_plane, lanes = plane
    peers = FakePeers(credits=10)
    stream = EnvStream(lanes, 0, stream_plane, peers=peers)
    try:
        wait_for(lambda: len(peers.episodes()) == 10)
        time.sleep(0.3)  # no credit is left: nothing more may start
    finally:
        report = stream.stop()
    received = peers.episodes()
    # no episode beyond the gate's credits, none twice, none lost, none left open
    assert len(received) == 10 and sorted(received) == sorted(i for i, _ in report["produced"])
    assert sum(len(p) for p in peers.pushed) == 10
    assert report["abandoned_open"] == 0 and report["discarded"] == [] and report["credits_unused"] == 0
    for eid, decisions in report["produced"]:  # the producer's decisions per episode are what the actor got
        ep = received[eid]
        row = int(np.flatnonzero(ep.non_tensor_batch["episode_id"] == eid)[0])
        mask = ep.batch["mask"][row]
        assert int(mask.sum()) == decisions and 1 <= decisions <= HORIZON
        assert (ep.batch["policy_version"][row][mask > 0] == 0).all()  # every decision by the version it met
    trained_steps = sum(int(np.sum(p.non_tensor_batch["env_steps"])) for p in peers.pushed)
    assert report["executed_env_steps"] == report["finished_env_steps"] == trained_steps
    assert report["latency"]["decisions"] == sum(d for _, d in report["produced"])
    assert peers.granted == 10 and peers.released == 0


def test_a_version_change_is_carried_by_the_decisions_made_after_it(plane):
    policy, stream_plane, lanes = plane
    peers = FakePeers(credits=6)
    stream = EnvStream(lanes, 0, stream_plane, peers=peers)
    try:
        wait_for(lambda: len(peers.episodes()) >= 2)
        policy.version = 1
        wait_for(lambda: len(peers.episodes()) == 6)
    finally:
        stream.stop()
    versions = [int(v) for p in peers.pushed for row, m in zip(p.batch["policy_version"], p.batch["mask"], strict=True)
                for v in row[m > 0]]  # fmt: skip
    assert set(versions) == {0, 1}
    assert stream.oldest_open_version() is None  # nothing open, every push received


def test_a_push_the_actor_never_received_is_an_error_not_a_silent_loss(plane):
    _, stream_plane, lanes = plane
    peers = FakePeers(credits=2, fail_pushes=True)
    stream = EnvStream(lanes, 0, stream_plane, peers=peers)
    wait_for(lambda: len(peers.pushed) >= 1)
    wait_for(lambda: stream.error is not None)
    with pytest.raises(RuntimeError, match="push lost"):  # the driver's next poll hears of it
        stream.stats()
    with pytest.raises(RuntimeError, match="push lost"):
        stream.stop()


def test_lanes_that_post_while_another_sends_have_their_rows_combined_never_lost(monkeypatch):
    """`_send_requests`: a lane that posts while another lane is sending returns at once, and its row must go
    with the sender's next pass. With a slow send (so passes overlap often) every request is sent exactly once,
    several rows per message, and every credited episode completes (a request left behind would hang its env)."""
    from verl_async_vla.sampling.request_channel import RequestClient

    sent: list[np.ndarray] = []  # request ids of each message
    original = RequestClient.send

    def slow_send(self, target, data):
        sent.append(np.asarray(data["request"]).copy())
        time.sleep(0.004)
        return original(self, target, data)

    monkeypatch.setattr(RequestClient, "send", slow_send)
    policy = Policy()
    server = InferenceServer(policy.act_rows, policy.lock, 0, max_batch=16, max_wait_s=0.0, host="127.0.0.1",
                             authkey=AUTHKEY)  # fmt: skip
    lanes = EnvLanes(
        EnvConfig(num_workers=1, num_envs_per_worker=8, image_size=16, max_episode_steps=8), 0, 0
    )
    peers = FakePeers(credits=24)
    stream = EnvStream(lanes, 0, StreamPlane([server.address], AUTHKEY, actor=None, gate=None, horizon=HORIZON),
                       peers=peers)  # fmt: skip
    try:
        wait_for(lambda: len(peers.episodes()) == 24)
    finally:
        report = stream.stop()
        server.stop()
        lanes.close()
    ids = np.concatenate(sent)
    decisions = sum(d for _, d in report["produced"])
    assert len(ids) == len(set(ids.tolist())) == decisions  # each request sent once, none left behind
    assert len(sent) < decisions  # and some messages carried several lanes' rows
    assert report["ignored_answers"] == 0
