"""A small world model that learns on a CPU: the embedded task's next frame, state, reward and success.

Architecture (a U-Net conditioned by FiLM, Perez et al. 2018):
- encoder: three stride-2 convolutions, 64x64 -> 8x8 (for a 64-pixel frame), kept as skips;
- conditioning: the action chunk, the proprio state and the instruction (a bag of word embeddings) -> per-channel
  scale and shift of the 8x8 features;
- decoder: upsampling 3x3 convolutions back to full size with the skips, predicting a *change* of the frame (most
  pixels do not change: only the end-effector, and a cube it pushes, move);
- heads on keypoints (spatial softmax, Levine et al. 2016) of the conditioned and the encoder features: the next state
  (as a change) and a success logit;
- a *potential* head: the end-effector's distance to the named cube, read from one frame, its state and the
  instruction (where the named cube is is visible only through the frame, as for the policy, and read the same
  way: FiLM'd convolutions and keypoints). The chunk's reward is
  the task's potential-based shaping (Ng et al. 1999) between the current frame and the predicted one,
  `SHAPING_SCALE * (phi(s) - phi(s')) + SUCCESS_BONUS * success`, and success is declared when the predicted distance
  is within `SUCCESS_DIST` or the success logit says so. Why not a reward head: a directly regressed chunk reward
  (the first version) erred by 0.31 per chunk on held-out decisions, as much as the signal, and its errors add up
  over an episode; shaping from one learned potential telescopes, so an imagined episode's return is
  `SHAPING_SCALE * (phi(first real frame) - phi(last imagined frame))` plus the bonus, whatever the steps between.

Loss: frame MSE with changed pixels weighted up (`CHANGE_WEIGHT`: they are ~1 % of the frame and all that matters),
state MSE, success BCE, and the potential's squared error on the real frame and on the predicted next frame (the
frame an imagined episode continues from; detached, so that the potential does not bend the dynamics).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from verl_async_vla.envs.embedded.reach import SHAPING_SCALE, SUCCESS_BONUS, SUCCESS_DIST
from verl_async_vla.models.precision import resolve_vision_dtype
from verl_async_vla.models.tiny_vla import SpatialSoftmax
from verl_async_vla.models.tokenizer import WordTokenizer
from verl_async_vla.world_models.base import WorldModel, WorldPrediction, WorldState

CHANGE_WEIGHT = 20.0  # weight of a pixel that changes between frames, against 1 for one that does not
CHANGE_THRESHOLD = 0.04  # |delta| in [0, 1] units that counts as changed
POTENTIAL_WEIGHT = (
    100.0  # the potential's squared error is in m^2: x100 puts it in decimetres, beside the others
)


class EmbeddedWorldModel(nn.Module, WorldModel):
    def __init__(self, image_size: int = 64, state_dim: int = 4, action_dim: int = 2, chunk: int = 4,
                 channels: int = 16, hidden: int = 128, text_dim: int = 32, dtype: str = "auto"):  # fmt: skip
        super().__init__()
        # the conv trunk under bf16 autocast where the CPU has native bf16 (1.4x faster here, models/precision.py);
        # the frame's residual update, the state and the heads stay fp32
        self.compute_dtype = resolve_vision_dtype(dtype, "cpu")
        if image_size % 8:
            raise ValueError(f"the embedded world model needs image_size divisible by 8, got {image_size}")
        self.image_shape = (image_size, image_size, 3)
        self.state_dim, self.action_dim, self.chunk = state_dim, action_dim, chunk
        self.hparams = {"image_size": image_size, "state_dim": state_dim, "action_dim": action_dim, "chunk": chunk,
                        "channels": channels, "hidden": hidden, "text_dim": text_dim, "dtype": dtype}  # fmt: skip
        c = channels
        self.tokenizer = WordTokenizer()
        self.text = nn.EmbeddingBag(self.tokenizer.vocab_size, text_dim, mode="mean", padding_idx=0)
        # encoder: 64 -> 32 (c) -> 16 (2c) -> 8 (4c); decoder: upsample + 3x3 conv, cheaper than transposed
        # convolutions at full size (the 64x64 layers dominate the cost) and free of their checkerboard artefacts
        self.enc = nn.ModuleList([nn.Conv2d(3, c, 4, 2, 1), nn.Conv2d(c, 2 * c, 4, 2, 1),
                                  nn.Conv2d(2 * c, 4 * c, 4, 2, 1)])  # fmt: skip
        cond_in = state_dim + chunk * action_dim + text_dim
        self.cond = nn.Sequential(nn.Linear(cond_in, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU())
        self.film = nn.Linear(hidden, 4 * 4 * c)  # two FiLM'd 3x3 blocks at 8x8
        self.mid = nn.ModuleList([nn.Conv2d(4 * c, 4 * c, 3, 1, 1), nn.Conv2d(4 * c, 4 * c, 3, 1, 1)])
        # every decoder stage sees pixel coordinates (CoordConv, Liu et al. 2018) and is FiLM'd by the conditioning
        # and the *predicted* next state: where the end-effector goes is then a per-channel shift against the
        # coordinates, which a convolution can turn into "paint it here" at any resolution
        self.dec = nn.ModuleList([nn.Conv2d(4 * c + 2, 2 * c, 3, 1, 1),  # at 16, then + skip 2c
                                  nn.Conv2d(4 * c + 2, c, 3, 1, 1),  # at 32, then + skip c
                                  nn.Conv2d(2 * c + 2, c // 2, 3, 1, 1)])  # at 64, then + the frame  # fmt: skip
        self.dec_widths = (2 * c, c, c // 2)
        self.dec_film = nn.Linear(hidden + state_dim, 2 * sum(self.dec_widths))
        self.out = nn.Conv2d(c // 2 + 3, 3, 3, 1, 1)
        # the heads read *where* things are: keypoints (spatial softmax) of the instruction-conditioned 8x8 features
        # and of the 16x16 encoder features; a mean pool would average the named cube's position away
        self.keypoints = SpatialSoftmax()
        self.heads = nn.Sequential(
            nn.Linear(2 * (4 * c + 2 * c) + hidden, hidden), nn.GELU(), nn.Linear(hidden, state_dim + 1)
        )
        # the potential reads the frame as the policy does (models/tiny_vla.py): its own convolutions to 16x16, the
        # instruction as FiLM of their channels (so "red" selects red) and the keypoints of the result; reading the
        # shared encoder's keypoints instead left it at 0.07 m mean error (the MLP had to pick the named cube's
        # keypoint among all of them)
        self.potential_vision = nn.Sequential(
            nn.Conv2d(3, c, 5, 2, 2), nn.ReLU(), nn.Conv2d(c, c, 3, 2, 1), nn.ReLU(), nn.Conv2d(c, c, 3, 1, 1)
        )
        self.potential_film = nn.Linear(text_dim, 2 * c)
        self.potential = nn.Sequential(
            nn.Linear(2 * c + state_dim + text_dim, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
            nn.Linear(hidden, 1), nn.Softplus(),
        )  # fmt: skip
        nn.init.zeros_(self.out.weight)  # start as "nothing changes"
        nn.init.zeros_(self.out.bias)
        self.version = 0  # bumped by every (online) update

    # ---- the network, on tensors ------------------------------------------------------------------------
    def forward(self, image: torch.Tensor, state: torch.Tensor, actions: torch.Tensor, tokens: torch.Tensor
                ) -> dict[str, torch.Tensor]:  # fmt: skip
        """image (n, 3, H, W) in [0, 1]; -> next image in [0, 1], next state, success logit, the potential of the
        current and of the predicted frame, and the chunk's reward."""
        text = self.text(tokens)
        cond = self.cond(torch.cat([state, actions.flatten(1), text], dim=1))
        bf16 = self.compute_dtype == torch.bfloat16
        skips = self._encode(image)
        phi = self._potential(image, state, text)
        h = skips[-1]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            film = self.film(cond).view(len(h), 4, -1, 1, 1)
            for k, conv in enumerate(self.mid):
                h = h + F.gelu(conv(h) * (1 + film[:, 2 * k]) + film[:, 2 * k + 1])
        # the heads and the decoder's conditioning in fp32
        where = [self.keypoints(h.float()), self.keypoints(skips[2].float())]
        out = self.heads(torch.cat([*where, cond], dim=1))
        next_state = state + out[:, : self.state_dim]
        films = self.dec_film(torch.cat([cond, next_state], dim=1)).split(
            [w for w in self.dec_widths for _ in (0, 1)], dim=1
        )
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            for k, conv in enumerate(self.dec):
                h = F.interpolate(h, scale_factor=2.0, mode="nearest")
                h = conv(torch.cat([h, _coords(h)], dim=1))
                h = F.gelu(h * (1 + films[2 * k][..., None, None]) + films[2 * k + 1][..., None, None])
                h = torch.cat([h, skips[-2 - k]], dim=1)
            delta = self.out(h)
        next_image = (image + delta.float()).clamp(0, 1)
        next_phi = self._potential(next_image.detach(), next_state.detach(), text)
        success_logit = out[:, self.state_dim]
        success = (success_logit > 0) | (next_phi < SUCCESS_DIST)
        return {
            "image": next_image,
            "state": next_state,
            "success_logit": success_logit,
            "success": success,
            "potential": phi,
            "next_potential": next_phi,
            "reward": SHAPING_SCALE * (phi - next_phi) + SUCCESS_BONUS * success.float(),
        }

    def _encode(self, image: torch.Tensor) -> list[torch.Tensor]:
        """The frame and the three encoder feature maps (64, 32, 16, 8 pixels for a 64-pixel frame)."""
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.compute_dtype == torch.bfloat16):
            skips, h = [image], image
            for conv in self.enc:
                h = F.gelu(conv(h))
                skips.append(h)
        return skips

    def _potential(self, image: torch.Tensor, state: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """The end-effector's distance to the named cube (metres), read from one frame, its state and the
        instruction."""
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.compute_dtype == torch.bfloat16):
            v = self.potential_vision(image - 0.5)
        gamma, beta = self.potential_film(text).chunk(2, dim=-1)
        v = v.float() * (1 + gamma[..., None, None]) + beta[..., None, None]
        return self.potential(torch.cat([self.keypoints(F.relu(v)), state, text], dim=1)).squeeze(1)

    # ---- the WorldModel interface, on numpy ------------------------------------------------------------
    @torch.no_grad()
    def predict(self, context: WorldState, actions: np.ndarray) -> WorldPrediction:
        self.check(context, actions)
        pred = self(*self._inputs(context.image, context.state, actions, context.instruction))
        return WorldPrediction(
            image=(pred["image"].permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy(),
            state=pred["state"].float().numpy(),
            reward=pred["reward"].float().numpy(),
            success=pred["success"].numpy(),
        )

    def _inputs(self, image: np.ndarray, state: np.ndarray, actions: np.ndarray, instruction: list[str]
                ) -> tuple[torch.Tensor, ...]:  # fmt: skip
        return (
            torch.from_numpy(np.ascontiguousarray(image)).permute(0, 3, 1, 2).float() / 255,
            torch.as_tensor(state, dtype=torch.float32),
            torch.as_tensor(actions, dtype=torch.float32),
            self.tokenizer.encode(list(instruction)),
        )

    def to_batch(self, image: np.ndarray, state: np.ndarray, actions: np.ndarray, instruction: list[str],
                 next_image: np.ndarray, next_state: np.ndarray, reward: np.ndarray, success: np.ndarray,
                 potential: np.ndarray, next_potential: np.ndarray) -> dict[str, torch.Tensor]:  # fmt: skip
        img, st, act, tok = self._inputs(image, state, actions, instruction)
        return {"image": img, "state": st, "actions": act, "tokens": tok,
                "potential": torch.as_tensor(potential, dtype=torch.float32),
                "next_potential": torch.as_tensor(next_potential, dtype=torch.float32),
                "next_image": torch.from_numpy(np.ascontiguousarray(next_image)).permute(0, 3, 1, 2).float() / 255,
                "next_state": torch.as_tensor(next_state, dtype=torch.float32),
                "reward": torch.as_tensor(reward, dtype=torch.float32),
                "success": torch.as_tensor(success, dtype=torch.float32)}  # fmt: skip

    def config(self) -> dict[str, Any]:
        return dict(self.hparams)


def _coords(h: torch.Tensor) -> torch.Tensor:
    """(n, 2, H, W) pixel coordinates in [-1, 1], in h's dtype."""
    n, _, height, width = h.shape
    ys = torch.linspace(-1, 1, height, dtype=h.dtype).view(1, 1, height, 1).expand(n, 1, height, width)
    xs = torch.linspace(-1, 1, width, dtype=h.dtype).view(1, 1, 1, width).expand(n, 1, height, width)
    return torch.cat([xs, ys], dim=1)


def prediction_loss(pred: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]
                    ) -> tuple[torch.Tensor, dict[str, float]]:  # fmt: skip
    """The weighted sum of the terms, and each term (and the reward and success errors) for reporting."""
    changed = ((batch["next_image"] - batch["image"]).abs().amax(1, keepdim=True) > CHANGE_THRESHOLD).float()
    weight = 1 + (CHANGE_WEIGHT - 1) * changed
    image = (weight * (pred["image"] - batch["next_image"]) ** 2).mean()
    state = F.mse_loss(pred["state"], batch["next_state"])
    success = F.binary_cross_entropy_with_logits(pred["success_logit"], batch["success"])
    potential = F.mse_loss(pred["potential"], batch["potential"]) + F.mse_loss(
        pred["next_potential"], batch["next_potential"]
    )
    total = image + state + 0.5 * success + POTENTIAL_WEIGHT * potential
    with torch.no_grad():
        acc = (pred["success"].float() == batch["success"]).float().mean()
        pixel_mse = F.mse_loss(pred["image"], batch["next_image"])
        changed_mse = ((pred["image"] - batch["next_image"]) ** 2 * changed).sum() / (
            3 * changed.sum()
        ).clamp(min=1)
    return total, {"loss": total.item(), "image_weighted_mse": image.item(), "image_mse": pixel_mse.item(),
                   "image_changed_mse": changed_mse.item(), "state_mse": state.item(),
                   "potential_mae": (pred["potential"] - batch["potential"]).abs().mean().item(),
                   "next_potential_mae": (pred["next_potential"] - batch["next_potential"]).abs().mean().item(),
                   "reward_mae": (pred["reward"] - batch["reward"]).abs().mean().item(),
                   "success_bce": success.item(), "success_accuracy": acc.item()}  # fmt: skip
