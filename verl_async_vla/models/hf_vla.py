"""A pretrained Hugging Face vision-language model as the VLA backbone (`model.name=hf_vla`).

Any checkpoint directory that `AutoModelForImageTextToText` + `AutoProcessor` load (PaliGemma, the pi0 backbone;
other image-text-to-text models with a processor) becomes a `VLAPolicy`, the way OpenVLA-OFT turns a VLM into a
policy (Kim et al. 2025, "Fine-Tuning Vision-Language-Action Models", sec. 3): one forward pass over image +
instruction, the hidden state of the prompt's last token, joined with a projection of the proprio state, is
decoded in parallel into a whole action chunk (Gaussian, 256-bin or flow head, models/heads.py), and a value head
reads the same features. With `model.action_head=flow model.flow_expert=pi0` the flow head's expert reads the VLM's
KV cache itself, layer by layer, as pi0 does (models/pi0_expert.py).

Only local directories are read (`local_files_only`): this project never downloads. What RL changes and what
weights carry between workers is the trainable part: the heads and the proprio projection, plus the backbone
when `model.hf_train_backbone=true`, or its LoRA adapters with `model.lora_rank=r`; the rest comes from
`model.hf_path` on every worker. transformers is
imported when this model is built, never by the core.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from verl_async_vla.config.schema import ModelConfig
from verl_async_vla.models.heads import build_head
from verl_async_vla.models.policy import ActOutput, EvalOutput, PolicyObs, VLAPolicy

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def check_hf_path(path: str | None) -> Path:
    if not path:
        raise ValueError(
            "model.name=hf_vla needs model.hf_path=<local directory of a Hugging Face image-text-to-text model "
            "with its processor> (e.g. a PaliGemma checkpoint saved with save_pretrained)."
        )
    p = Path(os.path.expanduser(path))
    if not (p / "config.json").is_file():
        raise FileNotFoundError(
            f"model.hf_path={path!r} has no config.json; point it at a directory written by save_pretrained "
            "(this project never downloads from a model hub)."
        )
    return p


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of each row's last attended token, for left or right padding alike."""
    length = attention_mask.shape[1]
    return length - 1 - attention_mask.flip(1).argmax(1)


def add_lora(backbone: nn.Module, cfg: ModelConfig) -> None:
    """LoRA adapters (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models": W + (alpha / r) B A,
    B = 0 at the start, so the policy starts as the frozen backbone) on the modules matching `model.lora_targets`;
    only the adapters train (with the heads), and only they travel between workers."""
    from peft import LoraConfig, inject_adapter_in_model

    if cfg.hf_train_backbone:
        raise ValueError(
            "model.lora_rank adapts a frozen backbone; use it with model.hf_train_backbone=false."
        )
    config = LoraConfig(
        r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, target_modules=cfg.lora_targets, lora_dropout=0.0
    )
    try:
        inject_adapter_in_model(config, backbone)
    except ValueError as err:  # peft: "Target modules ... not found in the base model"
        raise ValueError(
            f"model.lora_targets={cfg.lora_targets!r} matches no module of the backbone ({err}); "
            "name its attention projections, e.g. '.*language_model.*\\.(q_proj|v_proj)'."
        ) from None
    for name, p in backbone.named_parameters():
        p.requires_grad = "lora_" in name


class HFVLAPolicy(VLAPolicy):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        from transformers import AutoModelForImageTextToText, AutoProcessor

        if cfg.hf_dtype not in DTYPES:
            raise ValueError(f"model.hf_dtype={cfg.hf_dtype!r} is unknown; use one of {sorted(DTYPES)}.")
        if cfg.device.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError(
                f"model.device={cfg.device} but this worker sees no CUDA device; use model.device=cpu, or run on a "
                "Ray cluster with GPUs (model.device=cuda asks Ray for one GPU per rollout / actor process)."
            )
        path = check_hf_path(cfg.hf_path)
        self.cfg = cfg
        self.chunk, self.action_dim = cfg.chunk, cfg.action_dim
        self.processor = AutoProcessor.from_pretrained(path, local_files_only=True)
        self.backbone = AutoModelForImageTextToText.from_pretrained(
            path, dtype=DTYPES[cfg.hf_dtype], local_files_only=True
        )
        self.backbone.requires_grad_(cfg.hf_train_backbone)
        if cfg.lora_rank > 0:
            add_lora(self.backbone, cfg)
        text = self.backbone.config.get_text_config()
        width = text.hidden_size
        self.state_proj = nn.Linear(cfg.state_dim, cfg.hidden)
        # pi0's expert reads the VLM's KV cache itself; the other heads read a trunk over the pooled features
        self.pi0 = cfg.action_head == "flow" and cfg.flow_expert == "pi0"
        if not self.pi0:
            self.trunk = nn.Sequential(nn.Linear(width + cfg.hidden, cfg.hidden), nn.GELU())
        # the flow head's value can read its expert (pi0) instead of the VLM features (pi0.5, the other heads)
        self.value_on_expert = cfg.action_head == "flow" and cfg.flow_value_on == "expert"
        critic_in = cfg.flow_expert_width if self.value_on_expert else width + cfg.hidden
        self.critic = nn.Sequential(nn.Linear(critic_in, cfg.hidden), nn.GELU(), nn.Linear(cfg.hidden, 1))
        if self.pi0:
            from verl_async_vla.models.flow_head import flow_head
            from verl_async_vla.models.pi0_expert import Pi0ActionExpert

            expert = Pi0ActionExpert(text, self._language_model().rotary_emb, cfg.flow_expert_width, cfg.chunk,
                                     cfg.action_dim, cfg.state_dim)  # fmt: skip
            self.head = flow_head(cfg, expert)
        else:
            self.head = build_head(cfg, cfg.hidden)
        self.trace_dim = self.head.trace_dim
        self.to(cfg.device)

    @property
    def device(self) -> torch.device:
        return self.state_proj.weight.device

    def _inputs(self, obs: PolicyObs) -> dict[str, Any]:
        if obs.image.ndim != 4 or obs.image.shape[-1] != 3:
            raise ValueError(f"hf_vla expects images (B, H, W, 3) uint8, got {tuple(obs.image.shape)}.")
        if obs.state.shape[-1] != self.cfg.state_dim:
            raise ValueError(
                f"state has {obs.state.shape[-1]} dims, model.state_dim={self.cfg.state_dim}; align them."
            )
        prompts = [
            self.cfg.hf_prompt.format(instruction=text.lower().rstrip(".")) for text in obs.instruction
        ]
        images = list(obs.image.cpu().numpy())  # the processor resizes and normalises like the backbone's SFT
        batch = self.processor(text=prompts, images=images, return_tensors="pt", padding="longest")
        batch.pop("labels", None)
        return {k: v.to(self.device) for k, v in batch.items()}

    def _language_model(self) -> nn.Module:
        lm = getattr(self.backbone.model, "language_model", None)
        if lm is None or not hasattr(lm, "rotary_emb") or not hasattr(lm, "layers"):
            raise ValueError(
                "model.flow_expert=pi0 needs a PaliGemma-class backbone (a rotary decoder at "
                "backbone.model.language_model); use model.flow_expert=mlp with this checkpoint."
            )
        return lm

    def _encode(self, obs: PolicyObs) -> tuple[torch.Tensor, object]:
        """One VLM pass: the pooled features [last prompt token, state projection], and what the head reads (the
        trunk over those features, or for pi0 the prefix's KV cache)."""
        inputs = self._inputs(obs)
        backbone_learns = self.cfg.hf_train_backbone or self.cfg.lora_rank > 0
        with torch.set_grad_enabled(torch.is_grad_enabled() and backbone_learns):
            out = self.backbone.model(**inputs, use_cache=self.pi0)
        hidden = out.last_hidden_state
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        token = hidden[rows, last_token_index(inputs["attention_mask"])].float()
        state = obs.state.float().to(self.device)
        f = torch.cat([token, self.state_proj(state)], dim=-1)
        if not self.pi0:
            return f, self.trunk(f)
        from verl_async_vla.models.pi0_expert import prefix_from_cache

        return f, prefix_from_cache(out.past_key_values, inputs["attention_mask"], state)

    def features(self, obs: PolicyObs) -> torch.Tensor:
        return self._encode(obs)[0]

    def act(self, obs: PolicyObs, deterministic: bool = False) -> ActOutput:
        f, cond = self._encode(obs)
        actions, log_prob, trace = self.head.sample(cond, deterministic)
        return ActOutput(
            actions.cpu(), log_prob.cpu(), self.value(f, cond).cpu(), None if trace is None else trace.cpu()
        )

    def evaluate(
        self, obs: PolicyObs, actions: torch.Tensor, trace: torch.Tensor | None = None
    ) -> EvalOutput:
        f, cond = self._encode(obs)
        trace = None if trace is None else trace.to(self.device)
        log_prob, entropy = self.head.evaluate(cond, actions.to(self.device), trace)
        return EvalOutput(log_prob.cpu(), entropy.cpu(), self.value(f, cond).cpu())

    def value(self, f: torch.Tensor, cond: object) -> torch.Tensor:
        return self.critic(self.head.expert_features(cond) if self.value_on_expert else f).squeeze(-1)

    def bc_loss(self, obs: PolicyObs, actions: torch.Tensor) -> torch.Tensor:
        return self.head.bc_loss(self._encode(obs)[1], actions.to(self.device)).cpu()

    def shipped_names(self) -> set[str]:
        """The trainable part only: a frozen multi-GB backbone is never shipped between workers."""
        return {n for n, p in self.named_parameters() if p.requires_grad}

    def fsdp_units(self) -> list[nn.Module]:
        # the backbone's parts apart from the float32 heads (a unit holds one dtype); its `.model` runs as a whole
        return [m for m in self.backbone.children() if any(True for _ in m.parameters())] + [
            self.state_proj, *([] if self.pi0 else [self.trunk]), self.critic,
        ]  # fmt: skip

    def load_weights(self, weights: dict[str, torch.Tensor]) -> None:
        missing = {n for n, p in self.named_parameters() if p.requires_grad} - set(weights)
        if missing:
            raise ValueError(
                f"weights lack {len(missing)} trainable tensors (e.g. {sorted(missing)[0]!r}); they were saved "
                "with a different model.hf_train_backbone or model."
            )
        self.load_state_dict(weights, strict=False)
