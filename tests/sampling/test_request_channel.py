"""The request channel (sampling/request_channel.py) on its own: real sockets between threads, no Ray."""

from __future__ import annotations

import threading
import time
from multiprocessing import AuthenticationError

import numpy as np
import pytest

from verl_async_vla.sampling.request_channel import RequestClient, RequestServer

KEY = b"k" * 16


class Served:
    """A server whose serving thread polls until stopped (as the inference server's does)."""

    def __init__(self):
        self.rows: list[dict] = []
        self.server = RequestServer("127.0.0.1", KEY, self.rows.append, "test")
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while not self.stop.is_set():
            self.server.poll(0.05)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.server.close()


def wait_for(cond, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def connected(served: Served, env_rank: int) -> tuple[RequestClient, list]:
    answers: list = []
    client = RequestClient(env_rank, KEY, lambda answer, rollout: answers.append((rollout, answer)))
    client.connect(0, served.server.address)
    wait_for(lambda: env_rank in served.server.conns)
    return client, answers


def test_rows_reach_the_server_and_answers_reach_the_env_worker_that_asked():
    served = Served()
    try:
        a, got_a = connected(served, 0)
        b, got_b = connected(served, 1)
        assert a.send(0, {"image": np.zeros((2, 4, 4, 3), np.uint8), "env_key": np.array([0, 1])})
        wait_for(lambda: len(served.rows) == 1)
        assert served.rows[0]["image"].shape == (2, 4, 4, 3)
        assert served.server.send(1, {"actions": np.ones(3)})
        wait_for(lambda: len(got_b) == 1)
        assert got_b[0][0] == 0 and got_b[0][1]["actions"].tolist() == [1, 1, 1] and got_a == []
        assert not served.server.send(7, {})  # no such env worker: counted, not silently lost
        assert served.server.stats["undeliverable"] == 1
        a.close()
        b.close()
    finally:
        served.close()


def test_one_poll_drains_every_request_already_waiting():
    """One request read per wake-up lets a backlog grow by one request per inference batch (measured: 140 ms
    median hop to the rollout worker on the embedded workload)."""
    received: list = []
    server = RequestServer("127.0.0.1", KEY, received.append, "test")
    client = RequestClient(0, KEY, lambda *_: None)
    client.connect(0, server.address)
    try:
        server.poll(5.0)  # the accepted connection's hello
        wait_for(lambda: (server.poll(0.01), 0 in server.conns)[1])
        for i in range(50):
            assert client.send(0, {"i": i})
        time.sleep(0.2)  # all 50 are in the socket now
        server.poll(1.0)
        assert [r["i"] for r in received] == list(range(50))
    finally:
        client.close()
        server.close()


def test_a_barrier_returns_only_once_every_answer_sent_before_it_was_handed_over():
    served = Served()
    try:
        clients = [connected(served, r) for r in range(3)]
        for _ in range(200):
            for r in range(3):
                served.server.send(r, {"x": np.zeros(64)})
        assert served.server.barrier(timeout=10.0) == []
        assert [len(got) for _, got in clients] == [200, 200, 200]  # counted by the receivers, not the sender
        for client, _ in clients:
            client.close()
    finally:
        served.close()


def test_a_barrier_names_the_env_worker_that_does_not_ack():
    served = Served()
    try:
        client, _ = connected(served, 0)
        client.on_answer = lambda *_: time.sleep(3)  # an env worker stuck in its handler
        served.server.send(0, {})
        assert served.server.barrier(timeout=0.3) == [0]
        client.close()
    finally:
        served.close()


def test_a_connection_without_the_runs_key_is_refused_and_others_still_connect():
    served = Served()
    try:
        intruder = RequestClient(9, b"wrong" * 4, lambda *_: None)
        with pytest.raises((AuthenticationError, EOFError, ConnectionError)):
            intruder.connect(0, served.server.address)
        client, got = connected(served, 0)
        assert 9 not in served.server.conns
        served.server.send(0, {"ok": 1})
        wait_for(lambda: len(got) == 1)
        client.close()
    finally:
        served.close()


def test_a_restarted_env_worker_replaces_its_old_connection():
    served = Served()
    try:
        old, got_old = connected(served, 0)
        first = served.server.conns[0]
        new, got_new = connected(served, 0)
        wait_for(lambda: served.server.conns[0] is not first)
        served.server.send(0, {"to": "new"})
        wait_for(lambda: len(got_new) == 1)
        assert got_old == []
        old.close()
        new.close()
    finally:
        served.close()


def test_the_env_side_drops_a_connection_whose_rollout_worker_went_away():
    served = Served()
    client, _ = connected(served, 0)
    assert client.live() == [0]
    served.close()  # closes its end of every connection, as a dying process would
    wait_for(lambda: client.live() == [])
    assert not client.send(
        0, {"rows": 1}
    )  # re-sent once the restarted worker is reconnected (EnvStream.resend)


def test_many_env_workers_connecting_at_once_all_get_through():
    # 48 env workers connecting in the same instant (a run's start): with multiprocessing's default listen backlog
    # of 1 some handshakes overflowed and their clients waited forever (a 16-worker run that never started)
    served = Served()
    clients: dict[int, RequestClient] = {}

    def connect(rank: int) -> None:
        c = RequestClient(rank, KEY, lambda *_: None)
        c.connect(0, served.server.address)
        clients[rank] = c

    try:
        threads = [threading.Thread(target=connect, args=(r,), daemon=True) for r in range(48)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 20.0
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        assert len(clients) == 48, f"{48 - len(clients)} env workers are still stuck in the handshake"
        wait_for(lambda: len(served.server.conns) == 48, timeout=10.0)
        for c in clients.values():
            c.close()
    finally:
        served.close()
