"""Advantages over episode rows (B, T): one row per episode, one column per decision (action chunk), masked after
the episode ends. That is verl's (batch, response_length) layout, so verl's own estimators apply unchanged."""

from __future__ import annotations

import numpy as np
import torch
from verl.trainer.ppo.core_algos import get_adv_estimator_fn

from verl_async_vla.config.schema import AlgoConfig

# Estimators that bootstrap from the value head; the rest (grpo, rloo, ...) are outcome-only and group by index.
VALUE_BASED = {"gae"}


def compute_advantages(
    cfg: AlgoConfig,
    rewards: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor,
    group_index: np.ndarray | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (advantages, returns), both (B, T). GAE: Schulman et al. 2016, eq. 16 (verl's implementation)."""
    fn = get_adv_estimator_fn(cfg.adv_estimator)
    if cfg.adv_estimator in VALUE_BASED:
        return fn(
            token_level_rewards=rewards, values=values, response_mask=mask, gamma=cfg.gamma, lam=cfg.lam
        )
    if group_index is None:
        raise ValueError(
            f"algo.adv_estimator={cfg.adv_estimator!r} groups episodes by task; none were given."
        )
    return fn(token_level_rewards=rewards, response_mask=mask, index=group_index)
