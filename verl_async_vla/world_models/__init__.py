"""Plug-in world models: learned simulators behind the env-shard API (docs/world_models.md)."""
