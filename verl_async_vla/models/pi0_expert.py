"""pi0's action expert over a VLM prefix (`model.name=hf_vla model.action_head=flow model.flow_expert=pi0`).

Black et al. 2024 (pi0, sec. 3-4): the VLM encodes image and instruction once per decision into a prefix; a small
action expert of its own width runs one layer per VLM layer, and at layer l its tokens (one state token, then H
action tokens carrying x_t and the flow time) attend to the VLM's keys and values of layer l and to each other. The
attention is block-causal: the prefix never sees the suffix (it is computed before the suffix exists and reused,
as a KV cache, for all K denoising steps), the state token sees the prefix and itself, and the action tokens see
the prefix, the state and all action tokens. The expert's queries, keys and values use the VLM's head geometry
and its rotary frequencies, at the positions after each row's prefix, so both halves share one attention.
The VLM is frozen by default; the expert (and the heads around it) train and travel per version.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F


def sincos_time(t: torch.Tensor, dim: int, min_period: float = 4e-3, max_period: float = 4.0) -> torch.Tensor:
    """pi0's sine-cosine embedding of the flow time (openpi `posemb_sincos`): periods log-spaced in
    [min_period, max_period], (B,) -> (B, dim)."""
    frac = torch.linspace(0.0, 1.0, dim // 2, device=t.device)
    period = min_period * (max_period / min_period) ** frac
    ang = t.float()[:, None] * (2.0 * torch.pi / period)[None]
    return torch.cat([ang.sin(), ang.cos()], dim=-1)


@dataclass
class Prefix:
    """What the VLM computed for a batch of decisions: per layer its keys and values (B, kv_heads, L, head_dim),
    which prefix positions hold tokens (B, L), and the proprio state the state token embeds."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    mask: torch.Tensor
    state: torch.Tensor

    def __len__(self) -> int:
        return self.mask.shape[0]

    @property
    def device(self) -> torch.device:
        return self.mask.device

    def repeat_rows(self, n: int) -> Prefix:
        """Every row repeated n times (row-major), for scoring K transitions of a decision in one call."""
        rep = lambda t: t.repeat_interleave(n, dim=0)  # noqa: E731
        return Prefix(
            [rep(k) for k in self.keys], [rep(v) for v in self.values], rep(self.mask), rep(self.state)
        )


def prefix_from_cache(cache: object, mask: torch.Tensor, state: torch.Tensor) -> Prefix:
    """A transformers KV cache (DynamicCache, any version) as a float32 Prefix."""
    layers = getattr(cache, "layers", None)
    if layers is not None:  # transformers >= 4.56
        keys, values = [la.keys for la in layers], [la.values for la in layers]
    else:
        keys, values = list(cache.key_cache), list(cache.value_cache)
    return Prefix([k.float() for k in keys], [v.float() for v in values], mask.bool(), state.float())


def suffix_mask(prefix_mask: torch.Tensor, suffix: int) -> torch.Tensor:
    """(B, S, L + S) bool, True = may attend: every suffix token sees the prefix's real tokens (never its padding);
    token 0 (the state) sees only itself in the suffix, the action tokens see the whole suffix."""
    b = prefix_mask.shape[0]
    sees_prefix = prefix_mask[:, None, :].expand(b, suffix, -1)
    rows = torch.arange(suffix, device=prefix_mask.device)
    within = (rows[None, :] == 0) | (rows[:, None] >= 1)  # (S, S): column 0 for all, all columns for actions
    return torch.cat([sees_prefix, within[None].expand(b, -1, -1)], dim=-1)


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary position embedding (Su et al. 2021, RoFormer, eq. 34), in the half-split layout HF models use."""
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin


class ExpertLayer(nn.Module):
    """One pre-norm transformer block of the expert, attending to one VLM layer's keys and values."""

    def __init__(self, width: int, heads: int, kv_heads: int, head_dim: int):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, head_dim
        self.attn_norm, self.mlp_norm = nn.RMSNorm(width), nn.RMSNorm(width)
        self.q = nn.Linear(width, heads * head_dim, bias=False)
        self.k = nn.Linear(width, kv_heads * head_dim, bias=False)
        self.v = nn.Linear(width, kv_heads * head_dim, bias=False)
        self.o = nn.Linear(heads * head_dim, width, bias=False)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, h: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor,
                cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:  # fmt: skip
        b, s, _ = h.shape
        x = self.attn_norm(h)
        q = self.q(x).view(b, s, self.heads, self.head_dim).transpose(1, 2)
        k = self.k(x).view(b, s, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v(x).view(b, s, self.kv_heads, self.head_dim).transpose(1, 2)
        q, k = rotate(q, cos[:, None], sin[:, None]), rotate(k, cos[:, None], sin[:, None])
        group = self.heads // self.kv_heads  # grouped-query attention, as the VLM's
        k = torch.cat([keys, k], dim=2).repeat_interleave(group, dim=1)
        v = torch.cat([values, v], dim=2).repeat_interleave(group, dim=1)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None])
        h = h + self.o(out.transpose(1, 2).reshape(b, s, -1))
        return h + self.mlp(self.mlp_norm(h))


class Pi0ActionExpert(nn.Module):
    """The flow head's velocity field (flow_head.VelocityField) on a `Prefix`: one ExpertLayer per VLM layer."""

    def __init__(self, text_config: object, rotary: nn.Module, width: int, chunk: int, action_dim: int,
                 state_dim: int):  # fmt: skip
        super().__init__()
        heads, kv_heads = text_config.num_attention_heads, text_config.num_key_value_heads
        head_dim = getattr(text_config, "head_dim", None) or text_config.hidden_size // heads
        self.width, self.chunk, self.action_dim = width, chunk, action_dim
        self._rotary = [rotary]  # the VLM's (its frequencies); held outside the module tree, so never shipped
        self.state_in = nn.Linear(state_dim, width)
        self.action_in = nn.Linear(action_dim, width)
        # pi0: the action token is an MLP of [action embedding, sinusoidal time embedding]
        self.action_time = nn.Sequential(nn.Linear(2 * width, width), nn.SiLU(), nn.Linear(width, width))
        self.layers = nn.ModuleList(
            ExpertLayer(width, heads, kv_heads, head_dim) for _ in range(text_config.num_hidden_layers)
        )
        self.norm = nn.RMSNorm(width)
        self.action_out = nn.Linear(width, action_dim)

    def tokens(self, x: torch.Tensor, t: torch.Tensor, cond: Prefix) -> torch.Tensor:
        """The suffix after the last layer, (B, 1 + H, width): the state token, then the H action tokens."""
        b = x.shape[0]
        if len(cond.keys) != len(self.layers):
            raise ValueError(f"the prefix has {len(cond.keys)} layers, the expert {len(self.layers)}")
        act = self.action_in(x.view(b, self.chunk, self.action_dim))
        te = sincos_time(t, self.width)[:, None].expand(-1, self.chunk, -1)
        h = torch.cat(
            [self.state_in(cond.state)[:, None], self.action_time(torch.cat([act, te], dim=-1))], dim=1
        )
        s = h.shape[1]
        positions = cond.mask.sum(1, keepdim=True) + torch.arange(s, device=x.device)[None]
        cos, sin = self._rotary[0](cond.keys[0], positions)
        mask = suffix_mask(cond.mask, s)
        for layer, keys, values in zip(self.layers, cond.keys, cond.values, strict=True):
            h = layer(h, keys, values, mask, cos.float(), sin.float())
        return self.norm(h)

    def velocity(self, x: torch.Tensor, t: torch.Tensor, cond: Prefix) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.tokens(x, t, cond)[:, 1:]
        return self.action_out(out).reshape(x.shape[0], -1), out.mean(dim=1)
