"""Training runs with a world model beside the real envs (env.world_model): both trainers, real Ray workers.

What must hold: imagined episodes are trained and tagged; they never count as real env steps, real training success or
the budget; evaluation stays the real simulator's; the ledger balances for each source on its own."""

import dataclasses
import json

import numpy as np
import pytest

from verl_async_vla.config.schema import WorldModelConfig
from verl_async_vla.controller import build_controller
from verl_async_vla.envs.embedded import EmbeddedReachShard
from verl_async_vla.world_models.data import record_episodes
from verl_async_vla.world_models.embedded import EmbeddedWorldModel
from verl_async_vla.world_models.registry import save_world_model

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world_model(tmp_path_factory):
    """A tiny, untrained world model of the small config's env (32-pixel frames, 12-step episodes), with recorded
    real episodes beside it for its resets."""
    out = tmp_path_factory.mktemp("wm")
    shard = EmbeddedReachShard(4, 32, 12, seed=5)
    try:
        record_episodes(shard, 8, 4, np.random.default_rng(0)).save(out / "episodes.npz")
    finally:
        shard.close()
    model = EmbeddedWorldModel(image_size=32, channels=8, hidden=32, dtype="float32")
    return str(save_world_model(out / "world_model.safetensors", model))


@pytest.mark.parametrize("trainer", ["sync", "async_vla"])
def test_imagined_episodes_are_trained_but_never_counted_as_real(
    ray_session, small_cfg, world_model, trainer
):
    cfg = dataclasses.replace(
        small_cfg,
        env=dataclasses.replace(
            small_cfg.env, world_model=WorldModelConfig("embedded", world_model, workers=1)
        ),
        trainer=dataclasses.replace(small_cfg.trainer, name=trainer, total_env_steps=80, eval_every=1),
    )
    controller = build_controller(cfg)
    try:
        summary = controller.train()
    finally:
        controller.release_workers()
    ledger = summary["ledger"]
    assert ledger["episodes_unaccounted"] == 0
    # each source balances on its own, and the two make up the whole
    assert ledger["real_episodes_unaccounted"] == ledger["imagined_episodes_unaccounted"] == 0
    for key in ("episodes_produced", "episodes_trained", "samples_trained"):
        assert ledger[f"real_{key}"] + ledger[f"imagined_{key}"] == ledger[key]
    assert ledger["imagined_episodes_trained"] > 0 and ledger["real_episodes_trained"] > 0

    records = [
        json.loads(line) for line in (controller.run_log.dir / "metrics.jsonl").read_text().splitlines()
    ]
    updates = [r for r in records if "actor/trained_env_steps" in r]
    real = sum(r["actor/trained_env_steps"] for r in updates)
    imagined = sum(r["actor/trained_imagined_env_steps"] for r in updates)
    # the budget and the headline count real env steps only; imagined ones apart
    assert summary["env_steps_trained"] == real >= cfg.trainer.total_env_steps
    assert summary["imagined_env_steps_trained"] == imagined > 0
    assert summary["imagined_env_steps"] >= imagined
    assert summary["env_steps_executed"] >= real  # the real simulator's steps; imagined ones are not in it
    assert sum(r["actor/imagined_episodes"] for r in updates) == ledger["imagined_episodes_trained"]
    # training success of the real simulator and of the world model are reported apart
    assert any("train/imagined_success" in r for r in updates) and any("train/success" in r for r in updates)
    # evaluation ran, in the real simulator (a world-model env refuses the held-out seeds evaluation resets with)
    assert sum("eval/success" in r for r in records) >= 2
