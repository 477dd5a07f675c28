"""What this plugin adds to verl's registries (importing the modules runs their `register_*` decorators)."""

from verl_async_vla.algos import off_policy  # noqa: F401

POLICY_LOSSES = ("decoupled_ppo",)
ADV_ESTIMATORS = ("vtrace",)
