"""The MetaWorld env shard on the real simulator (metaworld 3.1.1, MuJoCo 3.3.0). Skipped, with the install
command, when the `metaworld` extra is absent."""

import importlib.util

import numpy as np
import pytest

from verl_async_vla.config.schema import EnvConfig, MetaWorldConfig
from verl_async_vla.envs.base import HELD_OUT_SEED_BASE
from verl_async_vla.envs.metaworld.tasks import INSTRUCTIONS, MT10, split_variations, suite_tasks

needs_metaworld = pytest.mark.skipif(
    importlib.util.find_spec("metaworld") is None,
    reason="MetaWorld not installed: pip install 'verl-async-vla[metaworld]'",
)


def test_every_task_has_three_phrasings_and_no_phrasing_is_shared_between_tasks():
    assert len(INSTRUCTIONS) == 50 and set(MT10) <= set(INSTRUCTIONS)
    owner: dict[str, str] = {}
    for task, phrasings in INSTRUCTIONS.items():
        assert len(set(phrasings)) == 3, task
        for p in phrasings:
            assert p not in owner, f"{task} and {owner.get(p)} share the instruction {p!r}"
            owner[p] = task


def test_suites_and_the_variation_split_name_the_fix():
    assert (
        suite_tasks("mt10") == MT10
        and len(suite_tasks("mt50")) == 50
        and suite_tasks("push-v3") == ("push-v3",)
    )
    with pytest.raises(ValueError, match="env.metaworld.suite"):
        suite_tasks("mt11")
    train, held = split_variations(50, 10)
    assert held == list(range(40, 50)) and train == list(range(40))
    with pytest.raises(ValueError, match="eval_variations"):
        split_variations(50, 0)


def mt10_cfg(**kw) -> EnvConfig:
    return EnvConfig(name="metaworld", num_workers=1, num_envs_per_worker=10, image_size=32, max_episode_steps=200,
                     metaworld=MetaWorldConfig(suite="mt10", **kw))  # fmt: skip


@pytest.fixture(scope="module")
def shard():
    from verl_async_vla.envs import make_env_shard

    s = make_env_shard(mt10_cfg(), seed=0, rank=0)
    yield s
    s.close()


@needs_metaworld
def test_every_mt10_task_resets_steps_and_renders_its_own_scene(shard):
    ids = np.arange(10)
    assert shard.tasks == list(MT10)
    obs = shard.reset(ids)
    assert obs.image.shape == (10, 32, 32, 3) and obs.image.dtype == np.uint8
    assert obs.state.shape == (10, 4) and np.isfinite(obs.state).all()
    for task, text in zip(MT10, obs.instruction, strict=True):
        assert text in INSTRUCTIONS[task]
    # every frame shows a scene (not a blank buffer) and its own task's (drawer-open and drawer-close share a
    # scene but not the drawer's position: small differences)
    assert all(img.std() > 10 for img in obs.image)
    flat = obs.image.reshape(10, -1).astype(np.int32)
    assert min(np.abs(flat[i] - flat[j]).mean() for i in range(10) for j in range(i + 1, 10)) > 0.05
    res = shard.step(ids, np.tile(np.array([0.5, 0.0, 0.0, 0.0], np.float32), (10, 4, 1)))
    assert (res.env_steps == 4).all() and np.isfinite(res.reward).all()
    assert not np.allclose(res.obs.state[:, 0], obs.state[:, 0])  # the hand moved along x
    assert res.obs.image.shape == (10, 32, 32, 3)


@needs_metaworld
def test_held_out_variations_never_appear_in_training_resets(shard):
    train, held = shard.splits["reach-v3"]
    seen_train = set()
    for _ in range(60):
        shard.reset(np.array([0]))
        seen_train.add(int(shard.variation[0]))
    assert seen_train <= set(train) and len(seen_train) > 20
    seen_eval = set()
    for k in range(60):
        shard.reset(np.array([0]), seeds=np.array([HELD_OUT_SEED_BASE + k]))
        seen_eval.add(int(shard.variation[0]))
    assert seen_eval == set(held)
    # a variation is an object/goal placement: two variations give two different scenes' goals
    shard.reset(np.array([0]), seeds=np.array([HELD_OUT_SEED_BASE]))
    goal_a = shard.full_obs[0][-3:].copy()
    shard.reset(np.array([0]), seeds=np.array([HELD_OUT_SEED_BASE + 1]))
    assert np.abs(shard.full_obs[0][-3:] - goal_a).max() > 1e-3


@needs_metaworld
def test_the_chunked_expert_solves_the_tasks_and_planning_leaves_the_env_untouched(shard):
    ids = np.arange(10)
    shard.reset(ids, seeds=HELD_OUT_SEED_BASE + ids)
    before = shard.step(ids, np.zeros((10, 1, 4), np.float32)).obs
    shard.expert_actions(ids, 4)  # plans by stepping each env and restoring it
    again = shard.step(ids, np.zeros((10, 1, 4), np.float32)).obs
    # the same no-op after planning moves the state as it would have without planning (tiny drift per no-op)
    assert np.abs(again.state - before.state).max() < 1e-2
    success, done = np.zeros(10, bool), np.zeros(10, bool)
    while not done.all():
        live = ids[~done]
        res = shard.step(live, shard.expert_actions(live, 4))
        success[live] |= res.success
        done[live] = res.terminated | res.truncated
    assert success.sum() >= 8, dict(zip(MT10, success.tolist(), strict=True))


@needs_metaworld
def test_a_diverged_simulation_loses_its_episode_with_a_clear_error(shard):
    shard.reset(np.array([1]))
    shard.envs[1].data.qvel[:] = np.nan  # what a blown-up contact leaves behind
    with pytest.raises(RuntimeError, match="diverged"):
        shard.step(np.array([1]), np.zeros((1, 2, 4), np.float32))
    obs = shard.reset(np.array([1]))  # the env lanes rebuild or reset it; a reset recovers the env
    assert np.isfinite(obs.state).all()


def test_a_missing_backend_names_the_install_command(monkeypatch):
    """Checked by the driver before any worker starts (no Ray trace), with or without metaworld installed."""
    import importlib.util

    from verl_async_vla.envs import check_env_backend

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "metaworld" else real(name, *a)
    )
    with pytest.raises(ValueError, match=r"verl-async-vla\[metaworld\]"):
        check_env_backend(mt10_cfg())


@needs_metaworld
def test_a_bad_suite_name_is_refused_naming_the_key():
    from verl_async_vla.envs import make_env_shard

    with pytest.raises(ValueError, match="env.metaworld.suite"):
        make_env_shard(EnvConfig(name="metaworld", metaworld=MetaWorldConfig(suite="mt11")), seed=0)


@needs_metaworld
def test_the_sft_demonstrations_cover_every_task_of_the_suite():
    """Tasks spread round-robin over envs and a demonstration shard holds 8 envs: MT10's last two tasks come from a
    second shard (rank), not left out."""
    from verl_async_vla.config.schema import RunConfig, SFTConfig
    from verl_async_vla.models.sft import demonstrate

    cfg = RunConfig(env=mt10_cfg(), sft=SFTConfig(demo_episodes=10))
    cfg.model.action_dim = 4
    obs, actions = demonstrate(cfg)
    owner = {p: t for t, ps in INSTRUCTIONS.items() for p in ps}
    assert {owner[text] for text in obs.instruction} == set(MT10)
    assert actions.shape[1:] == (cfg.model.chunk, 4) and len(actions) == len(obs.instruction)


@needs_metaworld
def test_eval_reports_success_per_task_on_a_multi_task_suite(tmp_path):
    from verl_async_vla.config.schema import ModelConfig
    from verl_async_vla.eval import main
    from verl_async_vla.models import build_policy
    from verl_async_vla.models.checkpoint import save_checkpoint

    cfg = ModelConfig(image_size=32, channels=8, hidden=32, action_dim=4, state_dim=4)
    ckpt = save_checkpoint(tmp_path / "p.safetensors", build_policy(cfg), cfg)
    res = main([str(ckpt), "--env", "metaworld", "--episodes", "20", "--num-envs", "10",
                "--set", "metaworld.suite=mt10", "max_episode_steps=8"])  # fmt: skip
    assert set(res["per_task"]) == set(MT10)
    assert all(v["episodes"] == 2 for v in res["per_task"].values())
    mean = sum(v["success_rate"] for v in res["per_task"].values()) / 10
    assert abs(mean - res["success_rate"]) < 1e-9


@needs_metaworld
def test_envs_on_their_own_threads_render_concurrently():
    """The env lanes' contract (sampling/env_lanes.py): each env is built and stepped on its own thread, all envs at
    once. MetaWorld's own gymnasium viewer crashed the env worker there (segfault in render, a pilot MT10 run)."""
    from concurrent.futures import ThreadPoolExecutor

    from verl_async_vla.envs import make_env_shard

    cfg = mt10_cfg()
    cfg.num_envs_per_worker = 1

    def lane(rank: int) -> float:
        shard = make_env_shard(cfg, seed=0, rank=rank)
        try:
            shard.reset(np.array([0]))
            spread = []
            for _ in range(15):
                obs = shard.step(np.array([0]), np.full((1, 2, 4), 0.3, np.float32)).obs
                spread.append(float(obs.image.std()))
            return min(spread)
        finally:
            shard.close()

    with ThreadPoolExecutor(4) as lanes:
        assert min(lanes.map(lane, range(4))) > 10  # every frame of every env is a scene, not a blank buffer


@needs_metaworld
def test_the_sparse_reward_pays_only_success_and_the_dense_one_is_metaworlds():
    from verl_async_vla.envs import make_env_shard

    ids = np.arange(2)
    got = {}
    for reward in ("sparse", "dense"):
        cfg = mt10_cfg(reward=reward)
        cfg.num_envs_per_worker = 2  # reach-v3, push-v3
        shard = make_env_shard(cfg, seed=0)
        try:
            shard.reset(ids, seeds=HELD_OUT_SEED_BASE + ids)
            total, success = np.zeros(2), np.zeros(2, bool)
            while not success[0]:
                res = shard.step(ids[:1], shard.expert_actions(ids[:1], 4))
                total[0] += res.reward[0]
                success[0] |= res.success[0]
            got[reward] = total[0], int(shard.t[0])
        finally:
            shard.close()
    assert got["sparse"][0] == 1.0  # the episode's one success step
    # dense: MetaWorld's shaped reward over 10 each step (0-1), then the rest of the episode at 1 from the success on
    total, t = got["dense"]
    shaped = total - (200 - t)
    assert 0.1 * t < shaped <= t, (total, t)
    with pytest.raises(ValueError, match="env.metaworld.reward"):
        make_env_shard(mt10_cfg(reward="shaped"), seed=0)
