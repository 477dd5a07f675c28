"""The data-parallel actor (learning/data_parallel.py), both strategies: N ActorWorker ranks in real Ray processes
(gradients summed over a gloo group; fsdp2 shards every parameter with torch's fully_shard) train what one rank trains
on the same global batch; a train state saved by 2 fsdp2 ranks resumes on 1 all-reduce rank; runs with 2 actor ranks
under both trainers keep their ledgers."""

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


@pytest.fixture
def small_cfg(small_cfg):
    """N ranks must train what one rank would within fp32 noise, so the encoder computes in fp32 here: under bf16
    autocast (model.vision_dtype) a half minibatch's encoder weight gradients round differently at bf16's resolution
    (seen: vision.2.bias off by more than rtol 1e-4), which is precision, not a strategy error."""
    small_cfg.model.vision_dtype = "float32"
    return small_cfg


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


def _weights(group, strategy: str) -> list[dict[str, torch.Tensor]]:
    """Every rank's whole weights (all_reduce), or rank 0's (fsdp2: only rank 0 holds them gathered)."""
    handles = group.handles if strategy == "all_reduce" else group.handles[:1]
    return [weights_from_wire(w) for w, _ in ray.get([h.get_weights.remote() for h in handles])]


def _actor_kwargs(cfg, tmp_path, strategy: str, **algo) -> dict:
    torch.manual_seed(0)
    ckpt = tmp_path / "init.safetensors"
    if not ckpt.exists():
        save_checkpoint(ckpt, build_policy(cfg.model), cfg.model)
    return dict(model_cfg=dataclasses.asdict(cfg.model), algo_cfg={**dataclasses.asdict(cfg.algo), **algo},
                init_checkpoint=str(ckpt), seed=0, actor_strategy=strategy)  # fmt: skip


@pytest.mark.parametrize("proximal", ["scoring_pass", "first_epoch"])
@pytest.mark.parametrize("strategy", ["all_reduce", "fsdp2"])
def test_two_actor_ranks_take_the_same_update_as_one(ray_session, small_cfg, tmp_path, strategy, proximal):
    """Plain SGD, no clipping: a gradient averaged over the ranks where it should be summed (or counted twice, or
    one rank's share lost) changes the update and fails here. Two updates: the second batch was produced by version
    0, so its pi_prox is scored before it trains (scoring_pass) or filled by the first epoch, each rank its share of
    the rows (first_epoch): the second epoch then needs every rank to hold the other ranks' rows too."""
    cfg = small_cfg
    # 8 episodes of ~4 decisions, minibatches of 16 decisions: ~4 rows, two optimizer steps per epoch, each split
    # 2 + 2 over two ranks (unequal token shares); two epochs, so the second one reads pi_prox of rows another rank
    # filled
    algo = dict(optimizer="sgd", lr=0.05, max_grad_norm=1e9, ppo_epochs=2, minibatch_size=16, train_batch_episodes=8,
                proximal=proximal)  # fmt: skip
    kwargs = _actor_kwargs(cfg, tmp_path, strategy, **algo)
    rng = np.random.default_rng(1)
    batches = [episodes_to_proto(random_episodes(cfg, 8, 6, rng), 6) for _ in range(2)]
    weights, shares = {}, {}
    for n in (1, 2):
        group = spawn_group(ActorWorker, n, f"dp{n}", **kwargs)
        try:
            for batch in batches:
                results = group.ingest(batch)  # every rank gets the whole batch (verl ONE_TO_ALL dispatch)
                assert all(r["updated"] for r in results)
                # every rank trained a share of every minibatch (a rank with no rows reports no loss)
                assert all("actor/pg_loss" in r for r in results)
            shares[n] = [r["actor/param_share"] for r in results]
            weights[n] = _weights(group, strategy)
        finally:
            release(group)
    start, one, rank0 = load_checkpoint(kwargs["init_checkpoint"])["weights"], weights[1][0], weights[2][0]
    if strategy == "all_reduce":
        for name in one:
            assert torch.equal(rank0[name], weights[2][1][name]), f"ranks disagree on {name}"
    changed = [name for name in one if not torch.equal(start[name], one[name])]
    assert len(changed) > len(one) // 2  # the update moved most tensors
    for name in changed:
        # the same global gradient, summed in another order: the same change within float noise
        torch.testing.assert_close(rank0[name] - start[name], one[name] - start[name], rtol=1e-4, atol=1e-7,
                                   msg=f"{name}: 2 ranks changed it unlike 1 rank")  # fmt: skip
    assert shares[1] == [1.0]
    expected = [1.0, 1.0] if strategy == "all_reduce" else [0.5, 0.5]
    assert shares[2] == pytest.approx(expected, abs=0.02)  # fsdp2: each rank holds about half the elements


def test_a_train_state_saved_by_two_fsdp2_ranks_resumes_on_one_all_reduce_rank(
    ray_session, small_cfg, tmp_path
):
    """Adam's moments are gathered whole and saved in torch's index layout: one all-reduce rank loading them takes
    the next update as the fsdp2 pair does (a lost or misplaced moment would change it well beyond float noise).
    It also caught fsdp2's root unit left gathered after the no-grad scoring pass, which kept the action head's
    gradients off rank 1's shards in the second update (the head then differed by ~1 % of its movement)."""
    cfg = small_cfg
    rng = np.random.default_rng(2)
    first, second = (episodes_to_proto(random_episodes(cfg, 4, 6, rng), 6) for _ in range(2))
    state = tmp_path / "state"
    state.mkdir()
    pair = spawn_group(ActorWorker, 2, "fsdp2pair", **_actor_kwargs(cfg, tmp_path, "fsdp2"))
    try:
        pair.ingest(first)
        ray.get(pair.handles[0].set_peers.remote(pair.handles[1:]))  # as spawn_workers does
        saved = pair.save_state(str(state))  # rank 0 writes; rank 1 joins the optimizer's gather
        assert saved["policy_version"] == 1
        pair.ingest(second)
        after_pair = _weights(pair, "fsdp2")[0]
    finally:
        release(pair)
    single = spawn_group(ActorWorker, 1, "resumed", **_actor_kwargs(cfg, tmp_path, "all_reduce"))
    try:
        assert single.load_state(str(state)) == [1]
        single.ingest(second)
        after_single = _weights(single, "all_reduce")[0]
    finally:
        release(single)
    straight = spawn_group(ActorWorker, 1, "straight", **_actor_kwargs(cfg, tmp_path, "all_reduce"))
    try:  # the reference: one all-reduce rank trains both batches without a break
        straight.ingest(first)
        straight.ingest(second)
        reference = _weights(straight, "all_reduce")[0]
    finally:
        release(straight)
    start = load_checkpoint(str(tmp_path / "init.safetensors"))["weights"]
    for name, ref in reference.items():
        atol = float(1e-3 * (ref - start[name]).abs().max()) + 1e-8  # a thousandth of the tensor's movement
        for label, w in (("the fsdp2 pair", after_pair), ("the resumed rank", after_single)):
            torch.testing.assert_close(w[name], ref, rtol=0, atol=atol, msg=f"{name}: {label} differs")


@pytest.mark.parametrize(("name", "strategy"), [("async_vla", "all_reduce"), ("sync", "all_reduce"),
                                                ("async_vla", "fsdp2"), ("sync", "fsdp2")])  # fmt: skip
def test_a_run_with_two_actor_ranks_and_two_rollout_workers(ray_session, small_cfg, name, strategy):
    trainer = dataclasses.replace(small_cfg.trainer, name=name, total_env_steps=300, actor_workers=2,
                                  rollout_workers=2, actor_strategy=strategy)  # fmt: skip
    controller = build_controller(dataclasses.replace(small_cfg, trainer=trainer))
    try:
        summary = controller.train()
        handles = controller.workers.actor.handles
        digests = ray.get(
            [h.weights_digest.remote() for h in handles[: 2 if strategy == "all_reduce" else 1]]
        )
    finally:
        controller.release_workers()
    ledger = summary["ledger"]
    assert ledger["episodes_unaccounted"] == 0 and ledger["episodes_trained"] > 0
    assert summary["policy_version"] >= 2 and digests[0][0] == summary["policy_version"]
    assert len(set(digests)) == 1  # all_reduce: both ranks took every update
