import numpy as np
import pytest
import torch

from verl_async_vla.config.schema import ModelConfig
from verl_async_vla.models import PolicyObs, build_policy
from verl_async_vla.models.tokenizer import WordTokenizer


def make_obs(b=5, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    image = torch.randint(0, 255, (b, size, size, 3), dtype=torch.uint8, generator=g)
    texts = [
        "reach the red cube",
        "touch the blue block",
        "go to the green cube",
        "move to a purple thing",
        "x",
    ]
    return PolicyObs(image, torch.randn(b, 4, generator=g), texts[:b])


@pytest.mark.parametrize("head", ["gaussian", "discrete"])
def test_action_head_shapes(head):
    cfg = ModelConfig(action_head=head, image_size=32, chunk=3, channels=8, hidden=32)
    out = build_policy(cfg).act(make_obs())
    assert out.actions.shape == (5, 3, 2)
    assert out.log_prob.shape == (5,) and out.value.shape == (5,)
    assert out.actions.abs().max() <= 1.0 or head == "gaussian"


@pytest.mark.parametrize("head", ["gaussian", "discrete"])
def test_act_log_prob_equals_evaluate_log_prob_for_same_weights_and_actions(head):
    torch.manual_seed(0)
    policy = build_policy(ModelConfig(action_head=head, image_size=32, channels=8, hidden=32))
    obs = make_obs()
    out = policy.act(obs)
    ev = policy.evaluate(obs, out.actions)
    torch.testing.assert_close(ev.log_prob, out.log_prob, rtol=0, atol=1e-5)
    torch.testing.assert_close(ev.value, out.value)
    assert (ev.entropy > 0).all()


def test_discrete_head_bins_round_trip_to_256_centres():
    policy = build_policy(ModelConfig(action_head="discrete", image_size=32, channels=8, hidden=32))
    out = policy.act(make_obs(), deterministic=True)
    centres = torch.linspace(-1, 1, 256)
    assert torch.isin(out.actions.flatten(), centres).all()


def test_instruction_changes_the_action():
    torch.manual_seed(1)
    policy = build_policy(ModelConfig(image_size=32, channels=8, hidden=32))
    obs = make_obs(2)
    swapped = PolicyObs(obs.image, obs.state, list(reversed(obs.instruction)))
    a = policy.act(obs, deterministic=True).actions
    b = policy.act(swapped, deterministic=True).actions
    assert not torch.allclose(a, b)


def test_wrong_image_size_names_the_fix():
    policy = build_policy(ModelConfig(image_size=64, channels=8, hidden=32))
    with pytest.raises(ValueError, match="model.image_size"):
        policy.act(make_obs(size=32))


def test_tokenizer_is_deterministic_and_hashes_unknown_words():
    tok = WordTokenizer()
    ids = tok.encode(["Reach the RED cube!", "reach the zorblax"])
    assert ids.shape == (2, tok.max_len)
    assert ids[0, :4].tolist() == tok.encode(["reach the red cube"])[0, :4].tolist()
    assert 0 < ids[1, 2] <= 64  # unknown word -> a hash bucket, same in every process
    assert np.array_equal(
        ids.numpy(), WordTokenizer().encode(["Reach the RED cube!", "reach the zorblax"]).numpy()
    )
