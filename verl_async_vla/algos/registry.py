"""What this plugin adds to verl's registries (importing the modules runs their `register_*` decorators)."""

from verl_async_vla.algos import off_policy, policy_losses  # noqa: F401

POLICY_LOSSES = ("decoupled_ppo", "gipo", "m2po", "topr")
ADV_ESTIMATORS = ("vtrace",)
