"""A tiny VLA small enough to RL-train on two CPU cores, built like the real ones: a vision encoder, a language
encoder that conditions vision (FiLM), proprio state, an action-chunk head and a value head."""

from __future__ import annotations

import torch
from torch import nn

from verl_async_vla.config.schema import ModelConfig
from verl_async_vla.models.heads import build_head
from verl_async_vla.models.policy import ActOutput, EvalOutput, PolicyObs, VLAPolicy
from verl_async_vla.models.precision import resolve_vision_dtype
from verl_async_vla.models.tokenizer import WordTokenizer


class SpatialSoftmax(nn.Module):
    """Expected (x, y) of each feature map's softmax (Levine et al. 2016, End-to-End Visuomotor Policies, sec. 4)."""

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        b, c, h, w = f.shape
        p = torch.softmax(f.flatten(2), dim=-1).view(b, c, h, w)
        ys = torch.linspace(-1.0, 1.0, h, device=f.device)
        xs = torch.linspace(-1.0, 1.0, w, device=f.device)
        return torch.cat([(p.sum(3) * ys).sum(-1), (p.sum(2) * xs).sum(-1)], dim=1)


class TinyVLA(VLAPolicy):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.chunk, self.action_dim = cfg.chunk, cfg.action_dim
        self.tokenizer = WordTokenizer()
        c = cfg.channels
        self.vision = nn.Sequential(
            nn.Conv2d(3, c, 5, stride=2, padding=2), nn.ReLU(),
            nn.Conv2d(c, c, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(c, c, 3, stride=1, padding=1),
        )  # fmt: skip
        self.vision_dtype = resolve_vision_dtype(cfg.vision_dtype, cfg.device)
        self.text = nn.Embedding(self.tokenizer.vocab_size, cfg.text_dim, padding_idx=0)
        # FiLM (Perez et al. 2018): the instruction scales and shifts visual channels, so "red" can select red.
        self.film = nn.Linear(cfg.text_dim, 2 * c)
        self.keypoints = SpatialSoftmax()
        feat = 2 * c + cfg.text_dim + cfg.state_dim
        self.trunk = nn.Sequential(
            nn.Linear(feat, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, cfg.hidden), nn.ReLU()
        )
        # pi0 puts the value head on the action expert's output, pi0.5 (and every other head here) on the features
        self.value_on_expert = cfg.action_head == "flow" and cfg.flow_value_on == "expert"
        critic_in = cfg.flow_expert_width if self.value_on_expert else feat
        self.critic = nn.Sequential(nn.Linear(critic_in, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, 1))
        self.head = build_head(cfg, cfg.hidden)
        self.trace_dim = self.head.trace_dim

    def fsdp_units(self) -> list[nn.Module]:
        return [self.vision, self.text, self.film, self.trunk, self.critic]  # the head stays with the root

    def features(self, obs: PolicyObs) -> torch.Tensor:
        if obs.image.ndim != 4 or obs.image.shape[-1] != 3 or obs.image.shape[1] != self.cfg.image_size:
            raise ValueError(
                f"TinyVLA expects images (B, {self.cfg.image_size}, {self.cfg.image_size}, 3) uint8, got "
                f"{tuple(obs.image.shape)}; set model.image_size to the env's image size."
            )
        if obs.state.shape[-1] != self.cfg.state_dim:
            raise ValueError(
                f"state has {obs.state.shape[-1]} dims, model.state_dim={self.cfg.state_dim}; align them."
            )
        x = obs.image.permute(0, 3, 1, 2).float() / 255.0 - 0.5
        ids = self.tokenizer.encode(obs.instruction).to(x.device)
        mask = (ids != 0).float().unsqueeze(-1)
        t = (self.text(ids) * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        gamma, beta = self.film(t).chunk(2, dim=-1)
        with torch.autocast(
            x.device.type, dtype=self.vision_dtype, enabled=self.vision_dtype != torch.float32
        ):
            v = self.vision(x)
        v = v.float() * (1.0 + gamma[..., None, None]) + beta[..., None, None]
        return torch.cat([self.keypoints(torch.relu(v)), t, obs.state.float()], dim=-1)

    def act(self, obs: PolicyObs, deterministic: bool = False) -> ActOutput:
        f = self.features(obs)
        h = self.trunk(f)
        actions, log_prob, trace = self.head.sample(h, deterministic)
        return ActOutput(actions, log_prob, self.value(f, h), trace)

    def evaluate(
        self, obs: PolicyObs, actions: torch.Tensor, trace: torch.Tensor | None = None
    ) -> EvalOutput:
        f = self.features(obs)
        h = self.trunk(f)
        log_prob, entropy = self.head.evaluate(h, actions, trace)
        return EvalOutput(log_prob, entropy, self.value(f, h))

    def value(self, f: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        # The critic reads the policy's features but does not train them: early value errors (the critic starts
        # from scratch after SFT) would otherwise overwrite the visual grounding that SFT learned.
        x = self.head.expert_features(h) if self.value_on_expert else f
        return self.critic(x.detach()).squeeze(-1)

    def bc_loss(self, obs: PolicyObs, actions: torch.Tensor) -> torch.Tensor:
        return self.head.bc_loss(self.trunk(self.features(obs)), actions)
