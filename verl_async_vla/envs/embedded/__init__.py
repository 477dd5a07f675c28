"""The embedded MuJoCo colour-reach task (the CPU default)."""

from verl_async_vla.envs.embedded.reach import EmbeddedReachShard

__all__ = ["EmbeddedReachShard"]
