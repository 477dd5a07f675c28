"""verl Workers for the three roles. They hold state and compute; controllers decide who is called when."""

from verl_async_vla.workers.actor_worker import ActorWorker
from verl_async_vla.workers.env_worker import EnvWorker
from verl_async_vla.workers.rollout_worker import RolloutWorker

ROLE_WORKERS = {"env": EnvWorker, "rollout": RolloutWorker, "actor": ActorWorker}

__all__ = ["ROLE_WORKERS", "ActorWorker", "EnvWorker", "RolloutWorker"]
