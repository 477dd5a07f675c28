import os

import pytest

os.environ.setdefault("MUJOCO_GL", "egl")


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray for the whole session (starting Ray costs seconds); logical CPUs cover every test's workers."""
    from verl_async_vla.workers.placement import init_ray

    init_ray(None, logical_cpus=16)
    import ray

    yield ray
    ray.shutdown()


@pytest.fixture
def small_cfg(tmp_path):
    """A run config small enough for tests: 2 shards x 2 envs, short episodes, tiny SFT, cache under tmp."""
    from verl_async_vla.validate import validate

    return validate(
        {
            "env": {"num_workers": 2, "num_envs_per_worker": 2, "max_episode_steps": 12, "image_size": 32},
            "model": {"image_size": 32, "channels": 8, "hidden": 32},
            "sft": {"demo_episodes": 8, "steps": 5, "cache_dir": str(tmp_path / "sft")},
            "algo": {"ppo_epochs": 1, "minibatch_size": 16, "train_batch_episodes": 4},
            "trainer": {"total_env_steps": 60, "eval_every": 0, "eval_episodes": 4, "progress": False},
            "run_dir": str(tmp_path / "run"),
        }
    )
