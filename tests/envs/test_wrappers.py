import numpy as np
import pytest

from verl_async_vla.envs.embedded import EmbeddedReachShard
from verl_async_vla.envs.wrappers import PROFILES, FaultInjectionShard, LatencyProfile, LatencyShard


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


def test_fault_injection_misbehaves_on_schedule_and_counts_across_rebuilds():
    def make():
        return FaultInjectionShard(EmbeddedReachShard(1, image_size=32), "raise", env=91, after_steps=2, times=1,
                                   hang_s=0.0)  # fmt: skip

    shard = make()
    shard.reset(np.arange(1))  # call 1
    with pytest.raises(RuntimeError, match="injected fault: env 91"):
        shard.step(np.arange(1), np.zeros((1, 1, 2), np.float32))  # call 2
    rebuilt = make()  # `times=1`: the rebuilt env behaves
    rebuilt.reset(np.arange(1))
    rebuilt.step(np.arange(1), np.zeros((1, 1, 2), np.float32))
    nan = FaultInjectionShard(EmbeddedReachShard(1, image_size=32), "nan_obs", env=92, after_steps=1, times=1,
                              hang_s=0.0)  # fmt: skip
    assert np.isnan(nan.reset(np.arange(1)).state).all()
