"""The data-parallel actor (learning/data_parallel.py): N ActorWorker ranks in real Ray processes, gradients summed
over a gloo group, train exactly what one rank trains on the same global batch; an async run with 2 actor ranks
and 2 rollout workers keeps its ledger and leaves every rank with the same weights."""

import dataclasses

import numpy as np
import pytest
import ray
import torch

from verl_async_vla.controller import build_controller
from verl_async_vla.models import build_policy
from verl_async_vla.models.checkpoint import load_checkpoint, save_checkpoint
from verl_async_vla.plumbing.wire import weights_from_wire
from verl_async_vla.sampling.trajectory import Episode, episodes_to_proto
from verl_async_vla.workers import ActorWorker
from verl_async_vla.workers.placement import release, spawn_group

pytestmark = pytest.mark.slow


def random_episodes(cfg, n: int, horizon: int, rng: np.random.Generator) -> list[Episode]:
    m = cfg.model
    out = []
    for i in range(n):
        ep = Episode(i, i, "reach the red cube")
        for _ in range(int(rng.integers(2, horizon + 1))):  # unequal lengths: token shares differ per rank
            ep.image.append(rng.integers(0, 255, (m.image_size, m.image_size, 3), dtype=np.uint8))
            ep.state.append(rng.standard_normal(m.state_dim).astype(np.float32))
            ep.actions.append(rng.uniform(-1, 1, (m.chunk, m.action_dim)).astype(np.float32))
            ep.log_prob.append(float(rng.normal(-2, 0.3)))
            ep.value.append(float(rng.normal()))
            ep.reward.append(float(rng.random() < 0.2))
            ep.version.append(0)
        ep.env_steps, ep.success = len(ep) * m.chunk, bool(ep.reward[-1])
        out.append(ep)
    return out


def test_two_actor_ranks_train_the_same_weights_as_one(ray_session, small_cfg, tmp_path):
    cfg = small_cfg
    torch.manual_seed(0)
    ckpt = str(save_checkpoint(tmp_path / "init.safetensors", build_policy(cfg.model), cfg.model))
    batch = episodes_to_proto(
        random_episodes(cfg, cfg.algo.train_batch_episodes, 6, np.random.default_rng(1)), 6
    )
    kwargs = dict(model_cfg=dataclasses.asdict(cfg.model), algo_cfg=dataclasses.asdict(cfg.algo),
                  init_checkpoint=ckpt, seed=0)  # fmt: skip
    weights = {}
    for n in (1, 2):
        group = spawn_group(ActorWorker, n, f"dp{n}", **kwargs)
        try:
            results = group.ingest(batch)  # every rank gets the whole batch (verl ONE_TO_ALL dispatch)
            assert all(r["updated"] for r in results)
            weights[n] = [
                weights_from_wire(w) for w, _ in ray.get([h.get_weights.remote() for h in group.handles])
            ]
        finally:
            release(group)
    one, (rank0, rank1) = weights[1][0], weights[2]
    for name in one:
        assert torch.equal(rank0[name], rank1[name]), f"ranks disagree on {name}"
        # the same global gradient, summed in another order: equal within float noise
        torch.testing.assert_close(
            rank0[name], one[name], rtol=1e-5, atol=1e-6, msg=f"{name} differs from N=1"
        )
    start = load_checkpoint(ckpt)["weights"]
    assert any(not torch.equal(start[n], one[n]) for n in one)  # the update did change the weights


@pytest.mark.parametrize("name", ["async_vla", "sync"])
def test_a_run_with_two_actor_ranks_and_two_rollout_workers(ray_session, small_cfg, name):
    trainer = dataclasses.replace(small_cfg.trainer, name=name, total_env_steps=300, actor_workers=2,
                                  rollout_workers=2)  # fmt: skip
    controller = build_controller(dataclasses.replace(small_cfg, trainer=trainer))
    try:
        summary = controller.train()
        digests = ray.get([h.weights_digest.remote() for h in controller.workers.actor.handles])
    finally:
        controller.release_workers()
    ledger = summary["ledger"]
    assert ledger["episodes_unaccounted"] == 0 and ledger["episodes_trained"] > 0
    assert summary["policy_version"] >= 2 and digests[0] == digests[1]  # both ranks took every update
