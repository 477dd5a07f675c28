"""The request channel: observations from env workers to a rollout worker and action chunks back, over one socket
per (env worker, rollout worker) pair instead of two Ray actor calls per decision batch.

Why not Ray calls on this path: a decision batch is 1-3 rows of a few KB, so the call, not the payload, is the cost.
Profiled per process on the 2-core box (longtail, 320 env steps/s), the rollout worker burnt 0.40 cores, of which
inference was ~0.12: the rest was receiving `submit` calls and sending `deliver` calls (Ray's call-pool, IO and
dispatch threads on both ends), and every decision's round trip spent ~9 ms in Ray's two hops. A
`multiprocessing.connection` socket (stdlib, TCP, so it also works across nodes) carries the same pickled rows with
one `send` and one blocking `recv` on a reader thread. Everything else (weights, episodes, control) stays on Ray.

Messages are `(kind, payload)` tuples. Env -> rollout: `hello` (the env worker's rank, once), `rows` (a request),
`ack` (a barrier token), `bye`. Rollout -> env: `answer` (the rows of one env worker), `barrier` (a token).
One connection is a byte stream, so messages arrive in the order they were sent; `RequestServer.barrier` uses this:
when an env worker acks a barrier, every answer sent before it has been handed to that worker's `on_answer`.

A connection is closed only by the thread that reads it (a socket closed under a thread blocked in `recv` may be
reused by another before that thread wakes); the other side is told with `bye`, or sees EOF when its peer's
process dies.
"""

from __future__ import annotations

import itertools
import socket
import threading
import time
from collections.abc import Callable
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client, Connection, Listener, Pipe, wait
from typing import Any

Address = tuple[str, int]


def _no_delay(conn: Connection) -> Connection:
    """Send small messages at once. With Nagle's algorithm a request written while the previous one is not yet
    acknowledged waits for the peer's delayed ACK (up to 40 ms on Linux): measured, it made the hop to the rollout
    worker ~10 ms on average instead of well under 1."""
    sock = socket.fromfd(conn.fileno(), socket.AF_INET, socket.SOCK_STREAM)  # a duplicate of the same socket
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.close()
    return conn


LISTEN_BACKLOG = (
    256  # connections waiting to be accepted: more than any run has env workers per rollout worker
)


class ChannelError(RuntimeError):
    pass


class RequestServer:
    """The rollout side: accepts env workers' connections. The serving thread calls `poll(timeout)`, which reads
    whatever arrived on any connection and calls `on_rows(rows)` for every request, so requests are read on the
    thread that batches and answers them (no hand-off between threads, each of which would wait for the GIL).
    `send(env_rank, answer)` answers on that env worker's current connection."""

    def __init__(self, host: str, authkey: bytes, on_rows: Callable[[dict[str, Any]], None], name: str):
        self.on_rows, self.authkey, self.name = on_rows, authkey, name
        # multiprocessing's default backlog is 1: with many env workers connecting at once the kernel drops the
        # handshakes that overflow it, and a client that got its SYN-ACK then waits forever for a challenge the
        # server never sends (seen with 16 env workers: a run that never started)
        self.listener = Listener((host, 0), family="AF_INET", authkey=authkey, backlog=LISTEN_BACKLOG)
        self.address: Address = self.listener.address
        self.cond = threading.Condition()
        self.send_lock = threading.Lock()
        self.conns: dict[int, Connection] = {}  # env worker rank -> its current connection
        self.ranks: dict[
            Connection, int | None
        ] = {}  # every open connection (None: no hello yet) -> its rank
        self.acks: dict[int, int] = {}  # env worker rank -> the last barrier token it acked
        self._tokens = itertools.count(1)
        self._wake_r, self._wake_w = Pipe(duplex=False)  # wakes `poll` when a connection is accepted
        self.closed = False
        self.stats = {"connections": 0, "requests": 0, "answers": 0, "undeliverable": 0}
        threading.Thread(target=self._accept, name=f"{name}-accept", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn = self.listener.accept()
            except (OSError, EOFError, AuthenticationError):  # a client that failed the handshake
                if self.closed:
                    break
                continue
            if self.closed:
                conn.close()
                break
            with self.cond:
                self.ranks[_no_delay(conn)] = None
            self.wake()
        self.listener.close()

    def wake(self) -> None:
        """Make a `poll` in progress return (a new connection, or a stop)."""
        with self.send_lock:
            self._wake_w.send_bytes(b"")

    def poll(self, timeout: float | None) -> None:
        """Read every message that arrives within `timeout` (s) on any connection (on the serving thread)."""
        with self.cond:
            conns = list(self.ranks)
        for conn in wait([self._wake_r, *conns], timeout):
            if conn is self._wake_r:
                while self._wake_r.poll():
                    self._wake_r.recv_bytes()
                continue
            # drain: every message already here (one per wake-up would let a backlog grow by one request per
            # inference batch)
            while True:
                try:
                    kind, payload = conn.recv()
                except (EOFError, OSError):  # the env worker's process ended
                    kind, payload = "bye", None
                self._handle(conn, kind, payload)
                if kind == "bye" or not conn.poll():
                    break

    def _handle(self, conn: Connection, kind: str, payload: Any) -> None:
        if kind == "rows":
            self.stats["requests"] += 1
            self.on_rows(payload)
            return
        with self.cond:
            if kind == "hello":
                # a restarted env worker replaces its dead incarnation's connection (that one ends with EOF)
                self.ranks[conn] = rank = int(payload)
                self.conns[rank] = conn
                self.stats["connections"] += 1
            elif kind == "ack":
                rank = self.ranks[conn]
                self.acks[rank] = max(self.acks.get(rank, 0), int(payload))
            elif kind == "bye":
                rank = self.ranks.pop(conn, None)
                if rank is not None and self.conns.get(rank) is conn:
                    del self.conns[rank]
                conn.close()
            else:
                raise ChannelError(f"{self.name}: unknown message {kind!r}")
            self.cond.notify_all()

    def send(self, env_rank: int, answer: dict[str, Any]) -> bool:
        """False when env worker `env_rank` has no connection (its process died; the episode waiting for this
        answer is lost with it and counted by recovery, controller/recovery.py)."""
        with self.cond:
            conn = self.conns.get(env_rank)
        if conn is not None:
            try:
                with self.send_lock:
                    conn.send(("answer", answer))
                self.stats["answers"] += 1
                return True
            except OSError:
                pass
        self.stats["undeliverable"] += 1
        return False

    def barrier(self, timeout: float) -> list[int]:
        """Wait until every connected env worker has received every answer sent so far (their acks are read by
        `poll`, so the serving thread must keep polling meanwhile). -> the env worker ranks that did not ack within
        `timeout` (their connection stays; a dead one drops out on its own)."""
        token = next(self._tokens)
        with self.cond:
            targets = dict(self.conns)
        for conn in targets.values():
            try:
                with self.send_lock:
                    conn.send(("barrier", token))
            except OSError:
                pass
        deadline = time.monotonic() + timeout

        def pending() -> list[int]:
            return [r for r, c in targets.items() if self.conns.get(r) is c and self.acks.get(r, 0) < token]

        with self.cond:
            while pending() and time.monotonic() < deadline:
                self.cond.wait(max(0.0, deadline - time.monotonic()))
            return pending()

    def close(self) -> None:
        """Stop accepting (the accept thread is woken by one last connection of our own) and close every
        connection (call it from the serving thread, or once that thread has ended)."""
        with self.cond:
            if self.closed:
                return
            self.closed = True
            conns, self.ranks, self.conns = list(self.ranks), {}, {}
        try:
            Client(self.address, family="AF_INET", authkey=self.authkey).close()
        except (OSError, EOFError, AuthenticationError):
            pass
        for conn in conns:
            conn.close()


class RequestClient:
    """The env side: one connection per rollout worker. `on_answer(answer, rollout)` is called on that
    connection's reader thread. A connection that ends (its rollout worker died) drops out of `live()`; the
    driver's recovery reconnects it to the restarted process (controller/recovery.py)."""

    def __init__(self, env_rank: int, authkey: bytes, on_answer: Callable[[dict[str, Any], int], None]):
        self.env_rank, self.authkey, self.on_answer = env_rank, authkey, on_answer
        self.lock = threading.Lock()  # sends come from the request sender and from readers (acks)
        self.conns: dict[int, Connection] = {}

    def connect(self, rollout: int, address: Address) -> None:
        """(Re)connect to rollout worker `rollout` (after a restart it listens on a new port)."""
        try:
            conn = _no_delay(Client(tuple(address), family="AF_INET", authkey=self.authkey))
            conn.send(("hello", self.env_rank))
        except OSError as err:
            raise ChannelError(
                f"env worker {self.env_rank}: cannot reach rollout worker {rollout} at {address}: {err}. The "
                "request channel is a TCP connection between the two processes: on a multi-node cluster the "
                "nodes must reach each other on ephemeral ports."
            ) from err
        with self.lock:
            self.conns[rollout] = conn
        threading.Thread(target=self._read, args=(rollout, conn), name=f"env{self.env_rank}-answers{rollout}",
                         daemon=True).start()  # fmt: skip

    def live(self) -> list[int]:
        with self.lock:
            return sorted(self.conns)

    def send(self, rollout: int, rows: dict[str, Any]) -> bool:
        """False when the connection to `rollout` is gone (its requests are re-sent once it rejoins)."""
        with self.lock:
            conn = self.conns.get(rollout)
            if conn is None:
                return False
            try:
                conn.send(("rows", rows))
                return True
            except OSError:
                return False

    def _read(self, rollout: int, conn: Connection) -> None:
        try:
            while True:
                kind, payload = conn.recv()
                if kind == "answer":
                    self.on_answer(payload, rollout)
                elif kind == "barrier":
                    with self.lock:
                        conn.send(("ack", payload))
        except (EOFError, OSError):
            pass
        finally:
            with self.lock:
                if self.conns.get(rollout) is conn:
                    del self.conns[rollout]
            conn.close()

    def close(self) -> None:
        """Say bye on every connection; each rollout worker then closes its end and our readers end on EOF."""
        with self.lock:
            for conn in self.conns.values():
                try:
                    conn.send(("bye", None))
                except OSError:
                    pass
