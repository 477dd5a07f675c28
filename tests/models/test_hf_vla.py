"""model.name=hf_vla: a real Hugging Face VLM (tiny PaliGemma written with save_pretrained) as the VLA backbone."""

import dataclasses
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")
sys.path.insert(0, str(Path(__file__).parents[1] / "assets"))
from tiny_hf_vlm import write_tiny_paligemma  # noqa: E402

from verl_async_vla.config.schema import ModelConfig  # noqa: E402
from verl_async_vla.models import PolicyObs, build_policy  # noqa: E402
from verl_async_vla.models.checkpoint import load_checkpoint
from verl_async_vla.validate import validate  # noqa: E402


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    return str(write_tiny_paligemma(tmp_path_factory.mktemp("paligemma")))


def _cfg(hf_dir, **kw):
    return ModelConfig(name="hf_vla", hf_path=hf_dir, image_size=32, hidden=32, **kw)


def _obs(b=3, size=40):
    g = torch.Generator().manual_seed(0)
    return PolicyObs(
        image=torch.randint(0, 256, (b, size, size, 3), dtype=torch.uint8, generator=g),
        state=torch.randn(b, 4, generator=g),
        instruction=["reach the red cube.", "pick up the black bowl", "put the bowl on the plate"][:b],
    )


def test_act_and_evaluate_agree_and_shapes(hf_dir):
    torch.manual_seed(0)
    policy = build_policy(_cfg(hf_dir)).eval()
    obs = _obs()
    out = policy.act(obs)
    assert out.actions.shape == (3, 4, 2) and out.log_prob.shape == (3,) and out.value.shape == (3,)
    ev = policy.evaluate(obs, out.actions)  # same weights, same actions: pi/mu = 1 on-policy
    torch.testing.assert_close(ev.log_prob, out.log_prob, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ev.value, out.value)
    # the instruction reaches the features: same image and state, another instruction, other features
    swapped = dataclasses.replace(obs, instruction=list(reversed(obs.instruction)))
    assert not torch.allclose(policy.features(obs), policy.features(swapped))


def test_frozen_backbone_trains_and_ships_only_the_heads(hf_dir):
    policy = build_policy(_cfg(hf_dir))
    obs = _obs()
    loss = -policy.evaluate(obs, policy.act(obs).actions).log_prob.mean()
    loss.backward()
    grads = {n for n, p in policy.named_parameters() if p.grad is not None}
    assert grads and not any(n.startswith("backbone.") for n in grads)
    weights = policy.get_weights()
    assert set(weights) == {n for n, p in policy.named_parameters() if p.requires_grad}
    other = build_policy(_cfg(hf_dir))
    other.load_weights(weights)  # the frozen part comes from hf_path on every worker
    torch.manual_seed(1)
    a = policy.act(obs, deterministic=True).actions
    torch.testing.assert_close(other.act(obs, deterministic=True).actions, a)


def test_full_fine_tune_ships_the_backbone(hf_dir):
    policy = build_policy(_cfg(hf_dir, hf_train_backbone=True))
    obs = _obs(2)
    policy.evaluate(obs, policy.act(obs).actions).log_prob.sum().backward()
    assert any(p.grad is not None for n, p in policy.named_parameters() if n.startswith("backbone."))
    assert any(k.startswith("backbone.") for k in policy.get_weights())
    with pytest.raises(ValueError, match="hf_train_backbone"):
        policy.load_weights(build_policy(_cfg(hf_dir)).get_weights())


def test_bad_hf_config_names_the_fix(tmp_path, hf_dir):
    with pytest.raises(ValueError, match="model.hf_path=<local directory"):
        validate({"model": {"name": "hf_vla"}})
    with pytest.raises(FileNotFoundError, match="no config.json"):
        validate({"model": {"name": "hf_vla", "hf_path": str(tmp_path)}})
    with pytest.raises(ValueError, match="model.hf_dtype"):
        build_policy(_cfg(hf_dir, hf_dtype="int3"))
    with pytest.raises(ValueError, match="model.device"):
        validate({"model": {"device": "tpu"}})


def _async_hf_run(small_cfg, hf_dir, **model):
    """A short async run of the real workers and controller with an hf_vla policy (heads from scratch)."""
    from verl_async_vla.controller import build_controller

    cfg = dataclasses.replace(
        small_cfg,
        model=dataclasses.replace(small_cfg.model, name="hf_vla", hf_path=hf_dir, init="scratch", **model),
        trainer=dataclasses.replace(small_cfg.trainer, name="async_vla", total_env_steps=80, eval_episodes=2),
    )
    controller = build_controller(cfg)
    try:
        return controller.train(), controller
    finally:
        controller.release_workers()


@pytest.mark.slow
def test_async_run_with_an_hf_backbone(ray_session, small_cfg, hf_dir):
    """The real workers and controller, unchanged, train a Hugging Face backbone policy (from scratch heads)."""
    summary, _ = _async_hf_run(small_cfg, hf_dir)
    assert summary["policy_version"] >= 1 and summary["ledger"]["episodes_trained"] > 0
    ckpt = load_checkpoint(summary["checkpoint"])
    assert ckpt["model_cfg"]["name"] == "hf_vla"
    assert not any(k.startswith("backbone.") for k in ckpt["weights"])  # frozen backbone stays in hf_path


def test_gpu_recipe_composes_and_validates(hf_dir):
    """The one-GPU LIBERO recipe for a real VLA size class (not run here: no GPU, no 3B weights)."""
    from hydra import compose
    from hydra import initialize_config_dir as init_dir

    from verl_async_vla.main import CONFIG_DIR

    recipes = str(Path(__file__).parents[2] / "recipes")
    with init_dir(config_dir=recipes, version_base=None):
        cfg = compose(
            config_name="libero_spatial_hfvla_gpu_async",
            overrides=[
                "run_dir=/tmp/x",
                f"hydra.searchpath=[file://{CONFIG_DIR}]",
                f"model.hf_path={hf_dir}",
            ],
        )
    run = validate(cfg)
    assert (run.model.name, run.model.device, run.model.hf_dtype) == ("hf_vla", "cuda", "bfloat16")
    assert (run.model.action_dim, run.model.chunk, run.model.image_size) == (7, 8, 224)
    assert (run.trainer.name, run.trainer.placement, run.env.name) == ("async_vla", "colocated", "libero")


def test_lora_adapts_the_frozen_backbone_and_ships_only_adapters_and_heads(hf_dir):
    torch.manual_seed(0)
    plain = build_policy(_cfg(hf_dir))
    lora = build_policy(_cfg(hf_dir, lora_rank=4))
    weights = lora.get_weights()
    adapters = {k for k in weights if "lora_" in k}
    assert adapters and all(k.startswith("backbone.") == ("lora_" in k) for k in weights)
    assert all(
        "language_model" in k and any(p in k for p in ("q_proj", "k_proj", "v_proj", "o_proj"))
        for k in adapters
    )
    # B = 0 at the start: with the same heads, the adapted policy acts exactly as the frozen one
    lora.load_weights({**plain.get_weights(), **{k: weights[k] for k in adapters}})
    obs = _obs()
    torch.testing.assert_close(
        lora.act(obs, deterministic=True).actions, plain.act(obs, deterministic=True).actions
    )
    lora.evaluate(obs, lora.act(obs).actions).log_prob.sum().backward()
    learning = {n for n, p in lora.named_parameters() if p.grad is not None and n.startswith("backbone.")}
    assert learning and all("lora_B" in n or "lora_A" in n for n in learning)
    with pytest.raises(ValueError, match="model.lora_targets"):
        build_policy(_cfg(hf_dir, lora_rank=4, lora_targets=r".*no_such_module"))
    with pytest.raises(ValueError, match="hf_train_backbone=false"):
        build_policy(_cfg(hf_dir, lora_rank=4, hf_train_backbone=True))


@pytest.mark.slow
def test_async_run_with_lora_publishes_only_adapters_and_heads(ray_session, small_cfg, hf_dir):
    summary, controller = _async_hf_run(small_cfg, hf_dir, lora_rank=8)
    assert summary["policy_version"] >= 1 and summary["ledger"]["episodes_trained"] > 0
    ckpt = load_checkpoint(summary["checkpoint"])["weights"]
    backbone = [k for k in ckpt if k.startswith("backbone.")]
    assert backbone and all("lora_" in k for k in backbone)  # adapters travel, the frozen backbone never does
    published = [r["actor/published_mb"] for r in controller.run_log.history if "actor/published_mb" in r]
    size_mb = sum(v.numel() * v.element_size() for v in ckpt.values()) / 2**20
    assert published and abs(published[-1] - size_mb) < 1e-6


@pytest.mark.parametrize("value_on", ["prefix", "expert"])
@pytest.mark.parametrize("method", ["flow_sde", "flow_noise"])
def test_the_flow_head_on_the_hf_backbone_agrees_between_act_and_evaluate(hf_dir, method, value_on):
    torch.manual_seed(0)
    policy = build_policy(_cfg(hf_dir, action_head="flow", flow_method=method, flow_value_on=value_on,
                               flow_expert_width=32)).eval()  # fmt: skip
    obs = _obs()
    out = policy.act(obs)
    assert out.trace.shape == (3, policy.trace_dim)
    ev = policy.evaluate(obs, out.actions, out.trace)
    torch.testing.assert_close(ev.log_prob, out.log_prob, rtol=0, atol=1e-4)
    torch.testing.assert_close(ev.value, out.value, rtol=0, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("expert", ["mlp", "pi0"])
def test_async_run_with_the_flow_head_on_an_hf_backbone_publishes_only_the_trainable_part(
    ray_session, small_cfg, hf_dir, expert
):
    summary, controller = _async_hf_run(
        small_cfg, hf_dir, action_head="flow", flow_expert=expert, flow_expert_width=32
    )
    assert summary["policy_version"] >= 1 and summary["ledger"]["episodes_trained"] > 0
    ckpt = load_checkpoint(summary["checkpoint"])["weights"]
    assert any(k.startswith("head.field.") for k in ckpt) and not any(k.startswith("backbone.") for k in ckpt)
    published = [r["actor/published_mb"] for r in controller.run_log.history if "actor/published_mb" in r]
    size_mb = sum(v.numel() * v.element_size() for v in ckpt.values()) / 2**20
    assert published and abs(published[-1] - size_mb) < 1e-6
    print(f"flow ({expert} expert) on hf_vla: {len(ckpt)} trainable tensors, {size_mb:.3f} MiB per version")
