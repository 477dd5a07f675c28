import numpy as np
import pytest
import torch
from verl import DataProto

from verl_async_vla.sampling.batcher import DynamicBatcher


def rows(shard, n):
    return DataProto.from_dict(
        tensors={"state": torch.zeros(n, 4)}, non_tensors={"env_key": np.arange(n) + shard * 100}
    )


def test_batch_waits_at_most_max_wait_then_goes_with_what_is_ready():
    b = DynamicBatcher(max_batch=8, max_wait_s=0.010)
    assert b.wait_left(0.0) is None and b.pop_batch(0.0) is None
    b.put(0, rows(0, 3), now=1.000)
    assert b.wait_left(1.004) == pytest.approx(0.006)
    assert b.pop_batch(1.004) is None  # not due yet: room left and the oldest waited 4 ms
    batch = b.pop_batch(1.010)
    assert len(batch) == 3 and batch.meta_info["queue_wait_s"] == pytest.approx(0.010)


def test_full_batch_goes_at_once_and_never_exceeds_max_batch():
    b = DynamicBatcher(max_batch=4, max_wait_s=10.0)
    b.put(0, rows(0, 3), now=0.0)
    b.put(1, rows(1, 3), now=0.0)
    assert b.wait_left(0.0) == 0.0
    first = b.pop_batch(0.0)
    assert len(first) == 4 and len(b) == 2  # the second request was split, not delayed
    assert list(first.non_tensor_batch["env_key"]) == [0, 1, 2, 100]


def test_oldest_requests_are_served_first_across_shards():
    b = DynamicBatcher(max_batch=2, max_wait_s=0.0)
    b.put(0, rows(0, 2), now=0.0)
    b.put(1, rows(1, 2), now=0.1)
    b.put(0, rows(0, 2), now=0.2)
    order = [int(b.pop_batch(1.0).non_tensor_batch["env_key"][0] // 100) for _ in range(3)]
    assert order == [0, 1, 0]  # shard 1 is not starved by shard 0's second request
