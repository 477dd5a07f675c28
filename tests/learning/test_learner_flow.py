"""The learner rescores flow samples from their trace: on-policy it gets back the behaviour log-prob the rollout
recorded (ratio 1), and a trace that is not the sample's own gives something else."""

import numpy as np
import pytest
import torch

from verl_async_vla.config.schema import AlgoConfig, ModelConfig
from verl_async_vla.learning.episode_queue import add_proximal_columns, take_behaviour_as_proximal
from verl_async_vla.learning.learner import Learner
from verl_async_vla.models import build_policy
from verl_async_vla.models.checkpoint import save_checkpoint
from verl_async_vla.sampling.trajectory import episodes_to_proto

HORIZON = 4


@pytest.mark.parametrize("method", ["flow_sde", "flow_noise"])
def test_the_learner_rescores_a_flow_batch_to_its_behaviour_log_prob(tmp_path, method, rollout_episodes):
    model = ModelConfig(image_size=8, channels=4, hidden=16, text_dim=8, chunk=2, init="scratch",
                        action_head="flow", flow_method=method, flow_expert_width=16)  # fmt: skip
    torch.manual_seed(0)
    policy = build_policy(model)
    ckpt = save_checkpoint(tmp_path / "init.safetensors", policy, model)
    learner = Learner(model, AlgoConfig(ppo_epochs=1, minibatch_size=4, train_batch_episodes=3), str(ckpt), 0)
    batch = episodes_to_proto(rollout_episodes(policy), HORIZON)
    rows = torch.arange(len(batch))
    mask = batch.batch["mask"].bool()
    log_prob, _, _ = learner.score(batch, rows)
    torch.testing.assert_close(log_prob[mask], batch.batch["old_log_prob"][mask], rtol=0, atol=1e-4)

    rolled = batch.batch["action_trace"].roll(1, dims=1)  # each decision scored with its neighbour's chain
    batch.batch["action_trace"] = rolled
    wrong, _, _ = learner.score(batch, rows)
    assert (wrong[mask] - batch.batch["old_log_prob"][mask]).abs().max() > 1e-2

    add_proximal_columns(batch)
    take_behaviour_as_proximal(batch.batch, rows)
    batch.batch["action_trace"] = rolled.roll(-1, dims=1)
    metrics = learner.update(batch)  # PPO on flow samples: one version later, finite loss
    assert metrics["actor/policy_version"] == 1 and np.isfinite(metrics["actor/pg_loss"])
