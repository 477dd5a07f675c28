import numpy as np
import pytest

from verl_async_vla.envs.embedded import EmbeddedReachShard
from verl_async_vla.envs.wrappers import PROFILES, CrashingShard, LatencyProfile, LatencyShard


def test_latency_is_seeded_and_a_call_lasts_as_long_as_its_slowest_env():
    profile = LatencyProfile(step_median_s=0.001, step_sigma=1.0, reset_s=0.002)
    a = LatencyShard(EmbeddedReachShard(2, image_size=32), profile, seed=3)
    b = LatencyShard(EmbeddedReachShard(2, image_size=32), profile, seed=3)
    for shard in (a, b):
        shard.reset(np.arange(2))
        shard.step(np.arange(2), np.zeros((2, 4, 2), np.float32))
    assert a.injected_s == b.injected_s > 0.002
    assert a.injected_s < 0.002 + 2 * 4 * 0.001 * np.exp(4)  # max over envs, not the sum of both


def test_reference_longtail_profile_is_fixed():
    assert PROFILES["longtail"] == LatencyProfile(step_median_s=0.010, step_sigma=1.0, reset_s=0.5)


def test_crashing_shard_is_fault_injection_that_raises():
    shard = CrashingShard(EmbeddedReachShard(1, image_size=32), crash_after=1)
    shard.reset(np.arange(1))
    shard.step(np.arange(1), np.zeros((1, 1, 2), np.float32))
    with pytest.raises(RuntimeError, match="injected env crash"):
        shard.step(np.arange(1), np.zeros((1, 1, 2), np.float32))
