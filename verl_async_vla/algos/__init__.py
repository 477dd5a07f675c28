"""RL math: advantages and losses (reusing verl's core_algos registries)."""
