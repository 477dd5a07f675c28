"""A flow-matching action head (pi0 family) with tractable RL log-probs.

Convention (Black et al. 2024, pi0, sec. 3, as in openpi): x_t = t * eps + (1 - t) * a, t = 1 is noise, t = 0 the
action chunk a; the network regresses the velocity u = eps - a, and inference integrates x <- x + dt * v(x, t) from
t = 1 down to 0 in K steps of dt = -1/K.

A deterministic ODE has no likelihood, so for RL some denoising steps become Gaussian transitions, two ways as in
pi_RL (Chen et al. 2025, arXiv 2510.25889, sec. 4):
- `flow_sde`: one step k, drawn per decision from 0..K-1, is an SDE step (Flow-GRPO, Liu et al. 2025, eq. 8-9):
  mean = x + dt * [v + sigma_t^2 / (2 t) * (x + (1 - t) v)], std = sigma_t * sqrt(|dt|), sigma_t = a sqrt(t/(1-t));
  the other steps are ODE steps. The decision's log-prob is that transition's density, summed over the chunk.
- `flow_noise`: every step adds noise of a learned std, bounded in [sigma_min, sigma_max] (ReinFlow-style noise
  head); the log-prob is the joint of the K Gaussian transitions.
Either way the log-prob depends on the chain x_K .. x_0 and (flow_sde) the stochastic step: both travel with the
sample as its `trace` (docs/architecture.md), and `evaluate` scores exactly that chain under the current weights.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch
from torch import nn

from verl_async_vla.config.schema import ModelConfig

FLOW_METHODS = ("flow_sde", "flow_noise")
# the action expert: an MLP over the policy's features | pi0's layer-by-layer expert over the VLM's KV cache (hf_vla)
FLOW_EXPERTS = ("mlp", "pi0")
FLOW_VALUE_ON = ("prefix", "expert")
# where a rollout's denoising chain starts: a draw x_K ~ N(0, I) (pi0, pi_RL) | its mean, 0 (greedy evaluation's)
FLOW_STARTS = ("noise", "zero")  # the value head reads the VLM features (pi0.5) or the expert's (pi0)
LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


def check_flow_settings(cfg: ModelConfig) -> None:
    """The flow keys a flow head needs, checked before any weights are built."""
    if cfg.flow_method not in FLOW_METHODS:
        raise ValueError(
            f"model.flow_method={cfg.flow_method!r} is unknown; use one of {list(FLOW_METHODS)}."
        )
    if not 2 <= cfg.flow_steps <= 32:
        raise ValueError(
            f"model.flow_steps={cfg.flow_steps}: the flow head needs 2..32 denoising steps (pi0 uses 10; "
            "3-10 is the useful range on CPU)."
        )
    if cfg.flow_noise_level <= 0:
        raise ValueError(f"model.flow_noise_level={cfg.flow_noise_level} must be > 0 (flow_sde's a).")
    if cfg.flow_start not in FLOW_STARTS:
        raise ValueError(f"model.flow_start={cfg.flow_start!r} is unknown; use one of {list(FLOW_STARTS)}.")
    if not 0 < cfg.flow_sigma_min < cfg.flow_sigma_max:
        raise ValueError(
            f"model.flow_sigma_min={cfg.flow_sigma_min}, flow_sigma_max={cfg.flow_sigma_max}: flow_noise needs "
            "0 < flow_sigma_min < flow_sigma_max."
        )


def time_features(t: torch.Tensor, n: int = 8) -> torch.Tensor:
    """Sinusoidal features of the flow time t in [0, 1], (B,) -> (B, 2n) (the positional encoding of pi0's
    action expert, at frequencies 1 .. 2^(n-1))."""
    freqs = (2.0 ** torch.arange(n, device=t.device, dtype=torch.float32)) * math.pi
    ang = t.float()[:, None] * freqs[None, :]
    return torch.cat([ang.sin(), ang.cos()], dim=-1)


def sft_times(n: int, device: torch.device | None = None) -> torch.Tensor:
    """Flow-matching training times, pi0's Beta schedule (openpi: Beta(1.5, 1) * 0.999 + 0.001): noisier t more
    often, never exactly 0."""
    beta = torch.distributions.Beta(torch.tensor(1.5), torch.tensor(1.0))
    return (beta.sample((n,)) * 0.999 + 0.001).to(device)


class VelocityField(Protocol):
    """What the flow head integrates. `cond` is whatever the policy computed once per decision (the tiny VLA's
    features, or the pi0 prefix with its KV cache); x is the flat chunk (B, K*A)."""

    width: int  # size of `features`' output

    def velocity(self, x: torch.Tensor, t: torch.Tensor, cond: object) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (v (B, K*A), the expert's hidden features (B, width), which the noise and value heads read)."""
        ...


class MLPVelocityField(nn.Module):
    """The tiny VLA's action expert: an MLP over (x_t, time features, the policy's features)."""

    def __init__(self, cond_dim: int, dim: int, width: int):
        super().__init__()
        self.width = width
        self.net = nn.Sequential(
            nn.Linear(dim + 16 + cond_dim, width), nn.GELU(), nn.Linear(width, width), nn.GELU()
        )
        self.out = nn.Linear(width, dim)

    def velocity(
        self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.net(torch.cat([x, time_features(t), cond], dim=-1))
        return self.out(hidden), hidden


class FlowChunkHead(nn.Module):
    """Samples and scores action chunks by denoising. `trace` layout per decision: the chain x_K (noise) .. x_0
    (the action) flattened, (K+1) * K_chunk * A floats, then the stochastic step index (flow_sde; 0 for
    flow_noise)."""

    def __init__(
        self, field: nn.Module, chunk: int, action_dim: int, steps: int, method: str, noise_level: float,
        sigma_min: float, sigma_max: float, start: str = "noise",
    ):  # fmt: skip
        super().__init__()
        if method not in FLOW_METHODS:
            raise ValueError(f"flow method {method!r} is unknown; use one of {list(FLOW_METHODS)}")
        self.field, self.chunk, self.action_dim = field, chunk, action_dim
        self.dim = chunk * action_dim
        self.steps, self.method, self.noise_level = steps, method, noise_level
        self.sigma_min, self.sigma_max = sigma_min, sigma_max
        if start not in FLOW_STARTS:
            raise ValueError(f"flow start {start!r} is unknown; use one of {list(FLOW_STARTS)}")
        self.start = start
        self.trace_dim = (steps + 1) * self.dim + 1
        # flow_noise's noise head; built for flow_sde too so one checkpoint layout serves both methods
        self.noise = nn.Linear(field.width, self.dim)
        nn.init.zeros_(self.noise.weight)
        nn.init.zeros_(self.noise.bias)  # starts mid-range: (sigma_min + sigma_max) / 2

    def _gaussian(self, x: torch.Tensor, t: torch.Tensor, v: torch.Tensor, hidden: torch.Tensor) -> tuple[
        torch.Tensor, torch.Tensor]:  # fmt: skip
        """Mean and std of the Gaussian transition from x at time t (B,) given the velocity there."""
        dt = -1.0 / self.steps
        if self.method == "flow_noise":
            span = self.sigma_max - self.sigma_min
            return x + dt * v, self.sigma_min + span * torch.sigmoid(self.noise(hidden))
        # Flow-GRPO's SDE step. At t = 1 (k = 0) sigma's 1 / (1 - t) is infinite; as pi_RL's code does, that step
        # takes the next grid time's denominator (sigma_0 = a sqrt(K)): the step then re-draws part of the starting
        # noise, x <- (1 - a^2 / 2K) x - v / K + (a / sqrt K) z, so the log-prob covers the randomness that moves
        # the action most (the noise the chain starts from), not only a late, small correction.
        tt = t[:, None]
        sigma = self.noise_level * torch.sqrt(tt / (1.0 - tt.clamp(max=1.0 - 1.0 / self.steps)))
        mean = x + dt * (v + sigma**2 / (2.0 * tt) * (x + (1.0 - tt) * v))
        return mean, (sigma * math.sqrt(-dt)).expand_as(mean)

    def _transition(
        self, x: torch.Tensor, k: torch.Tensor, cond: object
    ) -> tuple[torch.Tensor, torch.Tensor]:
        t = 1.0 - k.float() / self.steps
        return self._gaussian(x, t, *self.field.velocity(x, t, cond))

    @staticmethod
    def _log_normal(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        return (-((x - mean) ** 2) / (2 * std**2) - std.log() - LOG_SQRT_2PI).sum(-1)

    def sample(self, cond: object, deterministic: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> (actions (B, K, A), log-prob (B,), trace (B, trace_dim)). Deterministic: the ODE from the noise
        mean (zeros), log-prob 0, so evaluation is repeatable."""
        batch, device = _rows(cond)
        # `zero`: rollout chains start at the noise mean, as greedy evaluation does, so every bit of a decision's
        # randomness is in the transitions its log-prob scores (a drawn start moves the action most and is unscored)
        if deterministic or self.start == "zero":
            x = torch.zeros(batch, self.dim, device=device)
        else:
            x = torch.randn(batch, self.dim, device=device)
        log_prob = torch.zeros(batch, device=x.device)
        if deterministic:
            stochastic = torch.full((batch,), -1, dtype=torch.long, device=x.device)
        elif self.method == "flow_sde":
            stochastic = torch.randint(0, self.steps, (batch,), device=x.device)
        else:
            stochastic = torch.zeros(batch, dtype=torch.long, device=x.device)
        chain = [x]
        for k in range(self.steps):
            t = torch.full((batch,), 1.0 - k / self.steps, device=x.device)
            v, hidden = self.field.velocity(x, t, cond)
            if deterministic:
                x = x + (-1.0 / self.steps) * v
            else:
                mean, std = self._gaussian(x, t, v, hidden)
                noisy = mean + std * torch.randn_like(mean)
                # flow_noise: every step is stochastic; flow_sde: only each row's drawn step, the rest ODE steps
                pick = (
                    torch.ones_like(stochastic, dtype=torch.bool)
                    if self.method == "flow_noise"
                    else stochastic == k
                )
                log_prob = log_prob + torch.where(pick, self._log_normal(noisy, mean, std), 0.0)
                x = torch.where(pick[:, None], noisy, x + (-1.0 / self.steps) * v)
            chain.append(x)
        trace = torch.cat([torch.cat(chain, dim=-1), stochastic[:, None].float()], dim=-1)
        return x.view(-1, self.chunk, self.action_dim), log_prob, trace

    def evaluate(
        self, cond: object, actions: torch.Tensor, trace: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(log-prob, entropy) of the stored chain under the current weights. `actions` must be the chain's end."""
        b = trace.shape[0]
        if trace.shape[1] != self.trace_dim:
            raise ValueError(
                f"a flow sample's trace has {trace.shape[1]} floats, this head needs {self.trace_dim} "
                f"((flow_steps + 1) x chunk x action_dim + 1); the sample came from a different model.flow_steps."
            )
        chain = trace[:, :-1].view(b, self.steps + 1, self.dim)
        step = trace[:, -1].round().long()
        if self.method == "flow_sde":
            rows = torch.arange(b, device=trace.device)
            x, nxt = chain[rows, step], chain[rows, step + 1]
            mean, std = self._transition(x, step, cond)
            return self._log_normal(nxt, mean, std), (std.log() + 0.5 + LOG_SQRT_2PI).sum(-1)
        # flow_noise: all K transitions at once, the rows repeated per step
        x = chain[:, :-1].reshape(b * self.steps, self.dim)
        ks = torch.arange(self.steps, device=trace.device).repeat(b)
        mean, std = self._transition(x, ks, _repeat(cond, self.steps))
        nxt = chain[:, 1:].reshape(b * self.steps, self.dim)
        log_prob = self._log_normal(nxt, mean, std).view(b, self.steps).sum(-1)
        entropy = (std.log() + 0.5 + LOG_SQRT_2PI).sum(-1).view(b, self.steps).sum(-1)
        return log_prob, entropy

    def bc_loss(self, cond: object, actions: torch.Tensor) -> torch.Tensor:
        """Conditional flow matching (Lipman et al. 2023; pi0 sec. 3): || v(x_t, t) - (eps - a) ||^2."""
        a = actions.reshape(actions.shape[0], -1)
        t = sft_times(a.shape[0], a.device)
        eps = torch.randn_like(a)
        x_t = t[:, None] * eps + (1.0 - t[:, None]) * a
        v, _ = self.field.velocity(x_t, t, cond)
        return ((v - (eps - a)) ** 2).mean()

    def expert_features(self, cond: object) -> torch.Tensor:
        """The expert's hidden features at the start of denoising (t = 1, x = 0): what pi0 puts its value head on
        (`model.flow_value_on=expert`). Independent of the sampled noise, so act and evaluate agree."""
        batch, device = _rows(cond)
        x = torch.zeros(batch, self.dim, device=device)
        return self.field.velocity(x, torch.ones(batch, device=device), cond)[1]


def _rows(cond: object) -> tuple[int, torch.device]:
    if isinstance(cond, torch.Tensor):
        return cond.shape[0], cond.device
    return len(cond), cond.device  # a structured prefix (models/pi0_expert.py: Prefix)


def _repeat(cond: object, n: int) -> object:
    """`cond` with every row repeated n times (row-major, matching `tensor.repeat_interleave`)."""
    if isinstance(cond, torch.Tensor):
        return cond.repeat_interleave(n, dim=0)
    return cond.repeat_rows(n)  # a structured prefix (models/pi0_expert.py: Prefix)


def flow_head(cfg: ModelConfig, field: nn.Module) -> FlowChunkHead:
    check_flow_settings(cfg)
    return FlowChunkHead(
        field, cfg.chunk, cfg.action_dim, cfg.flow_steps, cfg.flow_method, cfg.flow_noise_level,
        cfg.flow_sigma_min, cfg.flow_sigma_max, cfg.flow_start,
    )  # fmt: skip
