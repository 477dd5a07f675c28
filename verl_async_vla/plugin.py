"""verl plugin entry point (group `verl.plugins`), loaded by `import verl`.

Registers this package's config search path and role table, and imports the modules whose decorators add losses and
advantage estimators to verl's registries. Keep it cheap and quiet: it runs inside every `import verl`.
"""

from __future__ import annotations

ROLE_WORKERS = {
    "env": "verl_async_vla.workers.env_worker:EnvWorker",
    "rollout": "verl_async_vla.workers.rollout_worker:RolloutWorker",
    "actor": "verl_async_vla.workers.actor_worker:ActorWorker",
}
CONFIG_SEARCH_PATH = "pkg://verl_async_vla.config"
REGISTERED: dict[str, list[str]] = {"policy_loss": [], "adv_estimator": []}


def register() -> dict[str, list[str]]:
    """Idempotent: add our entries to verl's registries; returns what this plugin registered."""
    from verl_async_vla.algos import registry

    REGISTERED["policy_loss"] = list(registry.POLICY_LOSSES)
    REGISTERED["adv_estimator"] = list(registry.ADV_ESTIMATORS)
    return REGISTERED


register()
