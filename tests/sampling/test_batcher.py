import numpy as np
import pytest

from verl_async_vla.sampling.batcher import DynamicBatcher, num_rows


def rows(shard, n):
    return {"state": np.zeros((n, 4), np.float32), "env_key": np.arange(n) + shard * 100,
            "instruction": np.array([f"task {shard}"] * n, dtype=object)}  # fmt: skip


def test_batch_waits_at_most_max_wait_then_goes_with_what_is_ready():
    b = DynamicBatcher(max_batch=8, max_wait_s=0.010)
    assert b.wait_left(0.0) is None and b.pop_batch(0.0) is None
    b.put(0, rows(0, 3), now=1.000)
    assert b.wait_left(1.004) == pytest.approx(0.006)
    assert b.pop_batch(1.004) is None  # not due yet: room left and the oldest waited 4 ms
    batch, queue_wait_s = b.pop_batch(1.010)
    assert num_rows(batch) == 3 and queue_wait_s == pytest.approx(0.010)


def test_full_batch_goes_at_once_and_never_exceeds_max_batch():
    b = DynamicBatcher(max_batch=4, max_wait_s=10.0)
    b.put(0, rows(0, 3), now=0.0)
    b.put(1, rows(1, 3), now=0.0)
    assert b.wait_left(0.0) == 0.0
    first, _ = b.pop_batch(0.0)
    assert num_rows(first) == 4 and len(b) == 2  # the second request was split, not delayed
    assert list(first["env_key"]) == [0, 1, 2, 100]
    assert first["state"].shape == (4, 4) and list(first["instruction"]) == ["task 0"] * 3 + ["task 1"]
    rest, _ = b.pop_batch(10.0)  # due once the oldest has waited max_wait_s
    assert list(rest["env_key"]) == [101, 102] and len(b) == 0  # the split request's remainder, nothing lost


def test_oldest_requests_are_served_first_across_shards():
    b = DynamicBatcher(max_batch=2, max_wait_s=0.0)
    b.put(0, rows(0, 2), now=0.0)
    b.put(1, rows(1, 2), now=0.1)
    b.put(0, rows(0, 2), now=0.2)
    order = [int(b.pop_batch(1.0)[0]["env_key"][0] // 100) for _ in range(3)]
    assert order == [0, 1, 0]  # shard 1 is not starved by shard 0's second request


def test_queueing_delay_is_the_mean_over_rows():
    b = DynamicBatcher(max_batch=4, max_wait_s=0.0)
    b.put(0, rows(0, 1), now=0.0)
    b.put(1, rows(1, 3), now=0.4)
    _, queue_wait_s = b.pop_batch(1.0)
    assert queue_wait_s == pytest.approx((1.0 + 3 * 0.6) / 4)
