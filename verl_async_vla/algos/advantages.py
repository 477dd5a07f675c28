"""Advantages over episode rows (B, T): one row per episode, one column per decision (action chunk), masked after
the episode ends. That is verl's (batch, response_length) layout, so verl's own estimators apply unchanged; the
V-trace estimator (algos/off_policy.py) is registered into the same registry and looked up the same way."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from verl.trainer.ppo.core_algos import get_adv_estimator_fn

from verl_async_vla.config.schema import AlgoConfig


def _gae_args(cfg: AlgoConfig, log_rho: torch.Tensor) -> dict[str, Any]:
    return {"gamma": cfg.gamma, "lam": cfg.lam}


def _vtrace_args(cfg: AlgoConfig, log_rho: torch.Tensor) -> dict[str, Any]:
    return {"gamma": cfg.gamma, "log_rho": log_rho, "rho_bar": cfg.is_cap, "c_bar": cfg.is_cap}


# The estimators this trainer can feed: each bootstraps from the value head, so it takes (rewards, values, mask)
# plus what its arguments add. Outcome-only estimators (grpo, rloo, ...) group episodes by task, which the trainers
# do not do yet; config validation refuses them.
ESTIMATOR_ARGS: dict[str, Callable[[AlgoConfig, torch.Tensor], dict[str, Any]]] = {
    "gae": _gae_args,  # Schulman et al. 2016, eq. 16 (verl's implementation; it whitens the advantages)
    "vtrace": _vtrace_args,  # Espeholt et al. 2018, eq. 1 (algos/off_policy.py)
}
# verl's GAE whitens its advantages; V-trace's are whitened here so that both reach the loss on the same scale
WHITEN_AFTER = {"vtrace"}


def compute_advantages(cfg: AlgoConfig, rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor,
                       log_rho: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """-> (advantages, returns), both (B, T). `log_rho`: log pi_prox / mu per decision (what V-trace truncates)."""
    args = ESTIMATOR_ARGS.get(cfg.adv_estimator)
    if args is None:
        raise ValueError(f"algo.adv_estimator={cfg.adv_estimator!r} is not supported; use one of "
                         f"{sorted(ESTIMATOR_ARGS)}.")  # fmt: skip
    if int((mask > 0).sum()) == 1:
        # a batch of one decision (drop mode can leave one): whitening it is undefined (verl raises), and centred its
        # advantage is 0; estimate on the row twice, which whitens to exactly that, and keep the returns
        n = rewards.shape[0]
        adv, returns = compute_advantages(cfg, *(x.repeat(2, 1) for x in (rewards, values, mask, log_rho)))
        return adv[:n] * mask, returns[:n]
    fn = get_adv_estimator_fn(cfg.adv_estimator)
    adv, returns = fn(token_level_rewards=rewards, values=values, response_mask=mask, **args(cfg, log_rho))
    if cfg.adv_estimator in WHITEN_AFTER:
        valid = adv[mask > 0]
        adv = (adv - valid.mean()) / (valid.std() + 1e-8) * mask
    return adv, returns
