"""model.vision_dtype: tiny_vla's conv encoder under bf16 autocast, everything after it in fp32."""

import pytest
import torch

from verl_async_vla.config.schema import ModelConfig
from verl_async_vla.models import PolicyObs, build_policy
from verl_async_vla.models.precision import native_bf16, resolve_vision_dtype
from verl_async_vla.validate import validate


def obs(b, seed=0):
    g = torch.Generator().manual_seed(seed)
    return PolicyObs(torch.randint(0, 255, (b, 32, 32, 3), dtype=torch.uint8, generator=g),
                     torch.randn(b, 4, generator=g), ["reach the red cube"] * b)  # fmt: skip


def pair():
    """The same weights under fp32 and under bf16."""
    torch.manual_seed(0)
    cfg = ModelConfig(image_size=32, channels=8, hidden=32, vision_dtype="float32")
    fp32 = build_policy(cfg)
    bf16 = build_policy(ModelConfig(**{**cfg.__dict__, "vision_dtype": "bfloat16"}))
    bf16.load_state_dict(fp32.state_dict())
    return fp32, bf16


def test_names_resolve_and_auto_follows_the_hardware():
    assert resolve_vision_dtype("float32", "cpu") is torch.float32
    assert resolve_vision_dtype("bfloat16", "cpu") is torch.bfloat16
    assert resolve_vision_dtype("auto", "cpu") is (torch.bfloat16 if native_bf16("cpu") else torch.float32)
    with pytest.raises(ValueError, match="float32"):
        resolve_vision_dtype("fp8", "cpu")
    with pytest.raises(ValueError, match="model.vision_dtype"):
        validate({"model": {"vision_dtype": "half"}})


def test_bf16_changes_only_the_encoder_numerics_and_the_outputs_stay_fp32():
    fp32, bf16 = pair()
    o = obs(6)
    with torch.no_grad():
        a, b = fp32.features(o), bf16.features(o)
    assert b.dtype == torch.float32
    diff = (a - b).abs().max().item()
    # the encoder really runs in bf16 (not silently fp32), and its error stays at bf16's resolution
    assert 0 < diff < 0.05 * a.abs().max().item()
    with torch.no_grad():
        out = bf16.act(o)
    assert out.log_prob.dtype == torch.float32 and out.value.dtype == torch.float32


def test_bf16_behaviour_log_prob_is_what_the_update_recomputes_at_any_batch_size():
    """The rollout acts on a handful of rows, the actor evaluates them among 100 others: the same log-prob, or
    on-policy rows would start every update off-policy by the precision mismatch."""
    _, bf16 = pair()
    big = obs(100, seed=1)
    small = PolicyObs(big.image[:5], big.state[:5], big.instruction[:5])
    with torch.no_grad():
        out = bf16.act(small)
        actions = torch.cat([out.actions, torch.zeros(95, *out.actions.shape[1:])])
        ev = bf16.evaluate(big, actions)
    torch.testing.assert_close(ev.log_prob[:5], out.log_prob, rtol=0, atol=1e-5)
    torch.testing.assert_close(ev.value[:5], out.value, rtol=0, atol=1e-5)


def test_bf16_trains():
    """Gradients reach every encoder weight through the autocast region."""
    _, bf16 = pair()
    o = obs(4)
    out = bf16.evaluate(o, torch.zeros(4, bf16.chunk, bf16.action_dim))
    (out.log_prob.sum() + out.value.sum()).backward()
    grads = [p.grad for p in bf16.vision.parameters()]
    assert all(g is not None and g.dtype == torch.float32 and g.abs().sum() > 0 for g in grads)
