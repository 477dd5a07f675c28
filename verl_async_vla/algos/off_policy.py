"""Off-policy corrections for samples produced by an older policy version (behaviour policy mu), by name.

`algo.off_policy=<name>` picks one entry of `CORRECTIONS`: which log-probs the loss's ratio is taken against (the
proximal policy pi_prox, the weights the update starts from, recomputed for every sample; or mu, the log-probs the
sample came with), the per-decision weights on the policy loss, and the registered loss or advantage estimator it
comes with (validate.py sets `algo.policy_loss` / `algo.adv_estimator` from it). The losses are in
algos/policy_losses.py and V-trace below, each registered into verl's registries and looked up there like any verl
built-in. Tensors are (B, T): episode rows, decision columns, `mask` after the end.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from verl.trainer.ppo.core_algos import register_adv_est

from verl_async_vla.algos import policy_losses  # noqa: F401  (registers the losses the corrections name)
from verl_async_vla.config.schema import AlgoConfig

# (log pi_prox, log mu, algo config) -> per-decision weights on the policy loss
Weights = Callable[[torch.Tensor, torch.Tensor, AlgoConfig], torch.Tensor]


def truncated_is_weights(proximal_log_prob: torch.Tensor, behaviour_log_prob: torch.Tensor, cfg: AlgoConfig
                         ) -> torch.Tensor:  # fmt: skip
    """w = min(pi_prox / mu, C): truncated importance sampling (Ionides 2008; Espeholt et al. 2018, rho-bar)."""
    return torch.exp(proximal_log_prob - behaviour_log_prob).clamp(max=cfg.is_cap).detach()


def capped_is_weights(proximal_log_prob: torch.Tensor, behaviour_log_prob: torch.Tensor, cfg: AlgoConfig
                      ) -> torch.Tensor:  # fmt: skip
    """w = pi_prox / mu where it is <= C, else 0: the sample is left out rather than truncated (AReaL's
    `behav_imp_weight_cap`, Fu et al. 2025; RLinf drops such samples the same way)."""
    w = torch.exp(proximal_log_prob - behaviour_log_prob).detach()
    return torch.where(w <= cfg.is_cap, w, torch.zeros_like(w))


@dataclass(frozen=True)
class Correction:
    centre: str  # "proximal" | "behaviour": what the loss's ratio pi_theta / old is taken against
    weights: Weights | None = None
    policy_loss: str | None = (
        None  # the registered loss it comes with; None: `algo.policy_loss` (vanilla PPO)
    )
    adv_estimator: str | None = None  # the registered estimator it comes with; None: `algo.adv_estimator`
    about: str = ""


CORRECTIONS: dict[str, Correction] = {
    # what a trainer that recomputes old log-probs does with stale data (verl's default actor flow): the decoupling
    "none": Correction(
        "proximal", about="PPO against pi_prox, mu ignored: the decoupling alone, no IS weights"
    ),
    # a standard PPO trainer fed stale rollouts (AReaL's "naive PPO", Fu et al. 2025): correction off
    "behaviour_ppo": Correction("behaviour", about="PPO ratio and clip centred on mu: correction off"),
    "tis": Correction("proximal", truncated_is_weights, about="PPO against pi_prox x min(pi_prox/mu, C)"),
    "decoupled_ppo": Correction(
        "proximal",
        capped_is_weights,
        policy_loss="decoupled_ppo",
        about="Hilton et al. 2021; pi_prox/mu above C left out (AReaL, RLinf)",
    ),  # fmt: skip
    "vtrace": Correction(
        "proximal", adv_estimator="vtrace", about="V-trace advantages (Espeholt et al. 2018)"
    ),
    "gipo": Correction(
        "behaviour", policy_loss="gipo", about="Gaussian-damped ratio to mu, no clip (AcceRL)"
    ),
    "m2po": Correction(
        "behaviour", policy_loss="m2po", about="ratio to mu, second-moment mask (Zheng et al. 2025)"
    ),
    "topr": Correction(
        "behaviour", policy_loss="topr", about="tapered off-policy REINFORCE (Le Roux et al. 2025)"
    ),
}
OFF_POLICY_MODES = tuple(CORRECTIONS)


def get_correction(name: str) -> Correction:
    if name not in CORRECTIONS:
        raise ValueError(f"algo.off_policy={name!r} is unknown; use one of {OFF_POLICY_MODES}.")
    return CORRECTIONS[name]


# `algo.proximal`: how pi_prox is obtained for rows an older version produced.
#   scoring_pass: one no-grad forward over them under the update's starting weights, before the PPO epochs (the
#     async trainer runs it while it waits for episodes): exact, and needed when pi_prox enters the advantages or the
#     per-decision weights, which are fixed before the first minibatch.
#   first_epoch: no extra forward; each minibatch's own first-epoch forward, detached, is its pi_prox (the weights
#     the update reached at that minibatch: Hilton et al. 2021 allow any recent policy as the proximal one, and
#     with one minibatch per epoch it is the starting weights exactly), and the value targets bootstrap from the
#     values the rollout recorded. Saves the pass (about an eighth of an update's compute, measured on the embedded
#     job) where the correction only needs pi_prox as the loss's centre.
#   auto: scoring_pass for the corrections that need it, first_epoch otherwise.
PROXIMAL_PASSES = ("auto", "first_epoch", "scoring_pass")


def proximal_pass(cfg: AlgoConfig) -> str:
    """`algo.proximal` resolved: "first_epoch" or "scoring_pass"."""
    if cfg.proximal not in PROXIMAL_PASSES:
        raise ValueError(f"algo.proximal={cfg.proximal!r} is unknown; use one of {PROXIMAL_PASSES}.")
    c = get_correction(cfg.off_policy)
    # IS weights and V-trace read pi_prox before the first minibatch, so they need it before the epochs
    needs_pass = c.weights is not None or c.adv_estimator is not None
    if cfg.proximal == "auto":
        return "scoring_pass" if needs_pass else "first_epoch"
    if cfg.proximal == "first_epoch" and needs_pass:
        raise ValueError(f"algo.off_policy={cfg.off_policy} weights samples by pi_prox / mu before the PPO epochs, "
                         "so pi_prox cannot come from the first epoch: set algo.proximal=auto or scoring_pass.")  # fmt: skip
    return cfg.proximal


@dataclass
class CorrectionInputs:
    old_log_prob: torch.Tensor  # the policy the loss's ratio is taken against
    is_weights: torch.Tensor | None  # per-decision weights on the policy loss
    log_rho: torch.Tensor  # log pi_prox - log mu, masked


def correction_inputs(
    cfg: AlgoConfig, behaviour_log_prob: torch.Tensor, proximal_log_prob: torch.Tensor, mask: torch.Tensor
) -> CorrectionInputs:
    c = get_correction(cfg.off_policy)
    old = proximal_log_prob if c.centre == "proximal" else behaviour_log_prob
    weights = None if c.weights is None else c.weights(proximal_log_prob, behaviour_log_prob, cfg) * mask
    return CorrectionInputs(old, weights, (proximal_log_prob - behaviour_log_prob) * mask)


@register_adv_est("vtrace")
def compute_vtrace_advantage_return(
    token_level_rewards: torch.Tensor,
    values: torch.Tensor,
    response_mask: torch.Tensor,
    gamma: float,
    log_rho: torch.Tensor,
    rho_bar: float = 1.0,
    c_bar: float = 1.0,
    **_: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """V-trace (Espeholt et al. 2018, IMPALA, eq. 1 and sec. 4.2). With rho_t = min(rho_bar, pi/mu),
    c_t = min(c_bar, pi/mu) and delta_t = rho_t (r_t + gamma V(x_{t+1}) - V(x_t)):
        v_s = V(x_s) + delta_s + gamma c_s (v_{s+1} - V(x_{s+1}))          (recursive form of eq. 1)
        A_s = rho_s (r_s + gamma v_{s+1} - V(x_s))                         (policy-gradient advantage)
    Episodes end inside the row (mask), so V and v are 0 past the end. Returns (advantages, v-targets)."""
    with torch.no_grad():
        ratio = torch.exp(log_rho.clamp(-20.0, 20.0))
        rho = ratio.clamp(max=rho_bar) * response_mask
        c = ratio.clamp(max=c_bar) * response_mask
        v = values * response_mask
        next_v = torch.cat([v[:, 1:], torch.zeros_like(v[:, :1])], dim=1)
        delta = rho * (token_level_rewards + gamma * next_v - v)
        vs = torch.zeros_like(v)
        acc = torch.zeros_like(v[:, 0])  # v_{s+1} - V(x_{s+1})
        for s in reversed(range(v.shape[1])):
            acc = (delta[:, s] + gamma * c[:, s] * acc) * response_mask[:, s]
            vs[:, s] = v[:, s] + acc
        next_vs = torch.cat([vs[:, 1:], torch.zeros_like(vs[:, :1])], dim=1)
        advantages = rho * (token_level_rewards + gamma * next_vs - v) * response_mask
    return advantages, vs
