"""pi0's action expert on the tiny PaliGemma (two text layers): one prefix pass per decision, block-causal
attention (the state token never sees the actions, padding is never read), act and evaluate agree, and only the
trainable part ships."""

import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")
sys.path.insert(0, str(Path(__file__).parents[1] / "assets"))
from tiny_hf_vlm import write_tiny_paligemma  # noqa: E402

from verl_async_vla.config.schema import ModelConfig  # noqa: E402
from verl_async_vla.models import PolicyObs, build_policy  # noqa: E402
from verl_async_vla.models.pi0_expert import Prefix, suffix_mask  # noqa: E402
from verl_async_vla.validate import validate  # noqa: E402


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    return str(write_tiny_paligemma(tmp_path_factory.mktemp("paligemma2"), text_layers=2))


def pi0(hf_dir, **kw):
    torch.manual_seed(0)
    cfg = ModelConfig(name="hf_vla", hf_path=hf_dir, image_size=32, hidden=32, action_head="flow",
                      flow_expert="pi0", flow_expert_width=32, **kw)  # fmt: skip
    return build_policy(cfg).eval()


def obs(b=3):
    g = torch.Generator().manual_seed(0)
    texts = [
        "reach the red cube",
        "pick up the black bowl and put it on the plate",
        "put the bowl on the plate",
    ]
    return PolicyObs(torch.randint(0, 256, (b, 40, 40, 3), dtype=torch.uint8, generator=g),
                     torch.randn(b, 4, generator=g), texts[:b])  # fmt: skip


@pytest.mark.parametrize("value_on", ["prefix", "expert"])
@pytest.mark.parametrize("method", ["flow_sde", "flow_noise"])
def test_act_and_evaluate_agree_with_one_prefix_pass_per_call(hf_dir, method, value_on):
    policy = pi0(hf_dir, flow_method=method, flow_value_on=value_on)
    assert len(policy.head.field.layers) == 2  # one expert layer per VLM layer
    calls = []
    hook = policy.backbone.model.register_forward_hook(lambda *_: calls.append(1))
    o = obs()
    out = policy.act(o)
    assert len(calls) == 1  # K denoising steps, one VLM pass: the prefix is a KV cache
    ev = policy.evaluate(o, out.actions, out.trace)
    assert len(calls) == 2  # flow_noise scores all K transitions from the same single pass
    hook.remove()
    torch.testing.assert_close(ev.log_prob, out.log_prob, rtol=0, atol=1e-4)
    torch.testing.assert_close(ev.value, out.value, rtol=0, atol=1e-5)


def test_the_state_token_never_sees_the_actions_and_the_actions_see_everything(hf_dir):
    policy = pi0(hf_dir)
    field = policy.head.field
    with torch.no_grad():
        _, prefix = policy._encode(obs())
        t = torch.full((3,), 0.6)
        x1, x2 = torch.randn(3, field.chunk * 2), torch.randn(3, field.chunk * 2)
        a, b = field.tokens(x1, t, prefix), field.tokens(x2, t, prefix)
    torch.testing.assert_close(a[:, 0], b[:, 0], rtol=0, atol=0)  # the state token: prefix and itself only
    assert (a[:, 1:] - b[:, 1:]).abs().amax() > 1e-3
    m = suffix_mask(torch.tensor([[True, True, False]]), 3)[0]
    assert m.tolist() == [[True, True, False, True, False, False],
                          [True, True, False, True, True, True],
                          [True, True, False, True, True, True]]  # fmt: skip


def test_padded_prefix_positions_are_never_read_and_real_ones_are(hf_dir):
    policy = pi0(hf_dir)
    field = policy.head.field
    with torch.no_grad():
        _, prefix = policy._encode(obs())
        assert (~prefix.mask).any()  # the instructions differ in length: rows are padded
        x, t = torch.randn(3, field.chunk * 2), torch.full((3,), 0.4)
        base = field.velocity(x, t, prefix)[0]

        def with_prefix(where: torch.Tensor) -> torch.Tensor:
            noisy = [k.masked_fill(where[:, None, :, None], 1e3) for k in prefix.keys]
            return field.velocity(x, t, Prefix(noisy, prefix.values, prefix.mask, prefix.state))[0]

        torch.testing.assert_close(with_prefix(~prefix.mask), base, rtol=0, atol=0)
        assert (with_prefix(prefix.mask) - base).abs().amax() > 1e-3


def test_the_prefix_is_computed_without_the_suffix(hf_dir):
    """The VLM pass runs before any action token exists, so its keys cannot depend on them: a prefix from a call
    that went on to denoise equals a fresh one, and sampling does not write into it."""
    policy = pi0(hf_dir)
    o = obs()
    with torch.no_grad():
        _, prefix = policy._encode(o)
        before = [k.clone() for k in prefix.keys]
        policy.head.sample(prefix, deterministic=False)
        _, again = policy._encode(o)
    for k0, k1, k2 in zip(before, prefix.keys, again.keys, strict=True):
        torch.testing.assert_close(k0, k1, rtol=0, atol=0)
        torch.testing.assert_close(k0, k2, rtol=0, atol=0)


def test_only_the_expert_and_heads_train_and_ship_with_a_frozen_vlm(hf_dir):
    policy = pi0(hf_dir, flow_method="flow_noise").train()
    o = obs()
    out = policy.act(o)
    (-policy.evaluate(o, out.actions, out.trace).log_prob.mean() + policy.bc_loss(o, out.actions)).backward()
    grads = {n for n, p in policy.named_parameters() if p.grad is not None}
    assert any(n.startswith("head.field.layers.1.") for n in grads)
    assert not any(n.startswith("backbone.") for n in grads)
    shipped = policy.get_weights()
    assert shipped and not any(k.startswith("backbone.") for k in shipped)
    assert not any("rotary" in k for k in shipped)  # the VLM's rotary frequencies are read, not copied


def test_pi0_needs_the_hf_backbone(hf_dir):
    with pytest.raises(ValueError, match="model.name=hf_vla"):
        validate({"model": {"action_head": "flow", "flow_expert": "pi0"}})
