"""Advantages over episode rows (B, T): one row per episode, one column per decision (action chunk), masked after
the episode ends. That is verl's (batch, response_length) layout, so verl's own estimators apply unchanged; the
V-trace estimator (algos/off_policy.py) is registered into the same registry and looked up the same way.

Two kinds: bootstrapping estimators (gae, vtrace) read the value head; outcome estimators (grpo, rloo) compare an
episode's return with the other episodes of its group in the batch, verl's `index` (an LLM's prompt): here the env
that played it. On LIBERO and MetaWorld an env keeps one task for the whole run, so a group is one task's episodes,
SimpleVLA-RL's and pi_RL's per-task GRPO baseline; on the embedded task an env draws a new goal every episode, so the
baseline is per env only."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from verl.trainer.ppo.core_algos import get_adv_estimator_fn

from verl_async_vla.config.schema import AlgoConfig


def _gae_args(cfg: AlgoConfig, log_rho: torch.Tensor) -> dict[str, Any]:
    return {"gamma": cfg.gamma, "lam": cfg.lam}


def _vtrace_args(cfg: AlgoConfig, log_rho: torch.Tensor) -> dict[str, Any]:
    return {"gamma": cfg.gamma, "log_rho": log_rho, "rho_bar": cfg.is_cap, "c_bar": cfg.is_cap}


def _no_args(cfg: AlgoConfig, log_rho: torch.Tensor) -> dict[str, Any]:
    return {}


# The estimators this trainer can feed, each with what it takes besides (rewards, mask): the bootstrapping ones get
# the values here, the outcome ones the groups (compute_advantages)
ESTIMATOR_ARGS: dict[str, Callable[[AlgoConfig, torch.Tensor], dict[str, Any]]] = {
    "gae": _gae_args,  # Schulman et al. 2016, eq. 16 (verl's implementation; it whitens the advantages)
    "vtrace": _vtrace_args,  # Espeholt et al. 2018, eq. 1 (algos/off_policy.py)
    "grpo": _no_args,  # Shao et al. 2024, eq. 3: (R - group mean) / group std, every decision of the episode
    "rloo": _no_args,  # Ahmadian et al. 2024, eq. 9: R - the mean of the group's other episodes
}
OUTCOME = {"grpo", "rloo"}
# verl's GAE whitens its advantages; V-trace's are whitened here so that both reach the loss on the same scale
WHITEN_AFTER = {"vtrace"}


def compute_advantages(cfg: AlgoConfig, rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor,
                       log_rho: torch.Tensor, groups: np.ndarray | None = None,
                       ) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """-> (advantages, returns), both (B, T). `log_rho`: log pi_prox / mu per decision (what V-trace truncates);
    `groups` (B,): the group of each row, for the outcome estimators (the rows' `env_key`)."""
    args = ESTIMATOR_ARGS.get(cfg.adv_estimator)
    if args is None:
        raise ValueError(f"algo.adv_estimator={cfg.adv_estimator!r} is not supported; use one of "
                         f"{sorted(ESTIMATOR_ARGS)}.")  # fmt: skip
    if cfg.adv_estimator in OUTCOME:
        return outcome_advantages(cfg, rewards, mask, groups)
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


def outcome_advantages(cfg: AlgoConfig, rewards: torch.Tensor, mask: torch.Tensor,
                       groups: np.ndarray | None) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """An outcome estimator's advantages (verl's, by `index` = group), with a group of one episode at 0: it has no
    other episode to be compared with, and verl's baseline of 0 for it would push up every lone success (in an async
    batch an env can land one episode). The returns are the discounted returns-to-go, so the value head keeps
    learning V (verl returns the advantages there; a value head fit to those would be of no use to GAE later)."""
    if groups is None:
        raise ValueError(f"algo.adv_estimator={cfg.adv_estimator} compares episodes of one env, but the batch has "
                         "no `env_key` column (episodes_to_proto writes it).")  # fmt: skip
    groups = np.asarray(groups)
    fn = get_adv_estimator_fn(cfg.adv_estimator)
    adv, _ = fn(token_level_rewards=rewards, response_mask=mask, index=groups)
    _, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    alone = torch.from_numpy(counts[inverse] == 1)
    adv = torch.where(alone[:, None], torch.zeros_like(adv), adv) * mask
    return adv, returns_to_go(rewards * mask, cfg.gamma)


def returns_to_go(rewards: torch.Tensor, gamma: float) -> torch.Tensor:
    """G_t = r_t + gamma * G_{t+1} per row, (B, T); masked rewards are 0, so padding adds nothing."""
    out = torch.zeros_like(rewards)
    running = torch.zeros(rewards.shape[0], dtype=rewards.dtype)
    for t in range(rewards.shape[1] - 1, -1, -1):
        running = rewards[:, t] + gamma * running
        out[:, t] = running
    return out
