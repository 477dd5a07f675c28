"""Hydra composition, config groups and start-up validation."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import MissingConfigException

from verl_async_vla.config import CONFIG_DIR
from verl_async_vla.controller import CONTROLLERS, build_controller
from verl_async_vla.validate import validate


def compose_cfg(*overrides):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
        return compose(config_name="vla_trainer", overrides=list(overrides))


def test_default_config_validates():
    run = validate(compose_cfg("run_dir=/tmp/x"))
    assert (
        run.trainer.name == "sync"
        and run.env.name == "embedded_reach"
        and run.model.action_head == "gaussian"
    )


@pytest.mark.parametrize("trainer", sorted(CONTROLLERS))
def test_trainer_group_selects_the_controller(trainer):
    run = validate(compose_cfg(f"trainer={trainer}", "run_dir=/tmp/x"))
    assert type(build_controller(run)) is CONTROLLERS[trainer]


def test_misspelt_trainer_fails_and_lists_the_options():
    with pytest.raises(MissingConfigException, match="sync"):
        compose_cfg("trainer=snyc")


def test_discrete_model_group_switches_the_head():
    assert validate(compose_cfg("model=tiny_vla_discrete", "run_dir=/tmp/x")).model.action_head == "discrete"


def test_flow_model_group_switches_the_head_and_keeps_the_flow_defaults():
    m = validate(compose_cfg("model=tiny_vla_flow", "model.flow_method=flow_sde", "run_dir=/tmp/x")).model
    assert (m.action_head, m.flow_method, m.flow_steps, m.flow_value_on) == (
        "flow",
        "flow_sde",
        5,
        "prefix",
    )


def test_unknown_key_or_wrong_type_fails_with_the_key_named():
    with pytest.raises(ValueError, match="env.num_envz"):
        validate({"env": {"num_envz": 3}})
    with pytest.raises(ValueError, match="trainer.total_env_steps"):
        validate({"trainer": {"total_env_steps": "lots"}})


def test_cross_field_rules_name_the_fix():
    with pytest.raises(ValueError, match="env.image_size"):
        validate({"model": {"image_size": 32}})
    with pytest.raises(ValueError, match="'discrete', 'flow', 'gaussian'"):
        validate({"model": {"action_head": "diffusion"}})


def test_a_cpu_layout_is_checked_against_the_placement_and_the_machine():
    assert validate({"trainer": {"cpu_layout": "actor_apart"}}).trainer.cpu_layout == "actor_apart"
    with pytest.raises(ValueError, match="trainer.cpu_layout=shared"):
        validate({"trainer": {"cpu_layout": "actor_apart", "placement": "colocated"}})
    with pytest.raises(ValueError, match="unknown"):
        validate({"trainer": {"cpu_layout": "pinned"}})


def test_the_collective_weight_plane_is_open_to_both_trainers_but_not_to_a_colocated_placement():
    for name in ("sync", "async_vla"):
        cfg = validate({"trainer": {"name": name, "weight_sync": "collective"}})
        assert cfg.trainer.weight_sync == "collective"
    with pytest.raises(ValueError, match="trainer.weight_sync=object_store"):
        validate({"trainer": {"weight_sync": "collective", "placement": "colocated"}})
    with pytest.raises(ValueError, match="unknown"):
        validate({"trainer": {"weight_sync": "nccl"}})


def test_advantage_estimators_are_checked_at_start_up_with_the_fix_named():
    assert validate({"algo": {"off_policy": "vtrace"}}).algo.adv_estimator == "vtrace"  # the pair
    with pytest.raises(ValueError, match="algo.off_policy=vtrace"):
        validate({"algo": {"adv_estimator": "vtrace"}})
    with pytest.raises(ValueError, match="reinforce_plus_plus.*not supported"):
        validate({"algo": {"adv_estimator": "reinforce_plus_plus"}})
    # an outcome estimator needs episodes to compare within each env: the default 2 x 32 envs want 128 per batch
    with pytest.raises(ValueError, match="at least 128"):
        validate({"algo": {"adv_estimator": "grpo"}})
    assert (
        validate({"algo": {"adv_estimator": "rloo", "train_batch_episodes": 128}}).algo.adv_estimator
        == "rloo"
    )
    assert (
        validate({"algo": {"adv_estimator": "vtrace", "off_policy": "vtrace"}}).algo.adv_estimator == "vtrace"
    )


def test_unknown_env_names_the_available_ones():
    from verl_async_vla.config.schema import EnvConfig
    from verl_async_vla.envs import make_env_shard

    with pytest.raises(ValueError, match="embedded_reach"):
        validate({"env": {"name": "libero_typo"}})
    with pytest.raises(ValueError, match="embedded_reach"):
        make_env_shard(EnvConfig(name="libero_typo"), seed=0)


def test_cli_bad_config_stops_with_one_clear_line(tmp_path):
    import subprocess
    import sys

    for override, needle in (
        ("env.name=nope", "env.name='nope' is unknown"),
        ("model.action_dim=7", "set model.action_dim=2"),
        (f"model.checkpoint={tmp_path}/missing.pt", "does not exist"),
    ):
        res = subprocess.run(
            [sys.executable, "-m", "verl_async_vla.main", override, f"run_dir={tmp_path}/run", "trainer.progress=false"],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert res.returncode == 2, res.stderr[-2000:]
        assert needle in res.stderr and "Traceback" not in res.stderr


def test_recipes_compose_onto_the_primary_config():
    from pathlib import Path

    from hydra import initialize_config_dir as init_dir

    recipes = str(Path(__file__).parents[2] / "recipes")
    for name, trainer, env in (
        ("embedded_sync", "sync", "embedded_reach"),
        ("embedded_async", "async_vla", "embedded_reach"),
        ("libero_spatial_sync", "sync", "libero"),
        ("libero_spatial_async", "async_vla", "libero"),
        ("metaworld_mt10_sync", "sync", "metaworld"),
        ("metaworld_mt10_async", "async_vla", "metaworld"),
    ):
        with init_dir(config_dir=recipes, version_base=None):
            cfg = compose(
                config_name=name, overrides=["run_dir=/tmp/x", f"hydra.searchpath=[file://{CONFIG_DIR}]"]
            )
        run = validate(cfg)
        assert (run.trainer.name, run.env.name) == (trainer, env)
        if env == "libero":  # the model is shaped for LIBERO and starts from scratch (no scripted expert)
            assert (run.model.action_dim, run.model.state_dim, run.model.init) == (7, 8, "scratch")
            assert run.env.libero.suite == "libero_spatial" and run.env.max_episode_steps == 220
        if env == "metaworld":  # MetaWorld's 4-d action and proprio state, SFT from its scripted experts
            assert (run.model.action_dim, run.model.state_dim, run.model.init) == (4, 4, "sft")
            assert (
                run.env.metaworld.suite == "mt10" and run.env.num_workers * run.env.num_envs_per_worker == 10
            )


def test_every_env_group_file_composes():
    """env=libero_object, env=gym_reacher, ... are valid selections (validation does not import the simulators)."""
    for path in sorted(Path(CONFIG_DIR, "env").glob("*.yaml")):
        run = validate(compose_cfg(f"env={path.stem}", "run_dir=/tmp/x"))
        assert run.env.name in ("embedded_reach", "libero", "gymnasium", "metaworld")


def test_every_metaworld_task_has_its_env_file_selecting_it():
    """env=metaworld_<task> exists for each of the 50 tasks and selects that task alone."""
    from verl_async_vla.envs.metaworld.tasks import INSTRUCTIONS, suite_tasks

    for task in INSTRUCTIONS:
        run = validate(compose_cfg(f"env=metaworld_{task}", "run_dir=/tmp/x"))
        assert run.env.name == "metaworld" and suite_tasks(run.env.metaworld.suite) == (task,)
    files = {p.stem for p in Path(CONFIG_DIR, "env").glob("metaworld_*.yaml")}
    assert files == {f"metaworld_{t}" for t in INSTRUCTIONS} | {"metaworld_mt10", "metaworld_mt50"}


def test_yaml_defaults_match_the_dataclass_defaults():
    """One source of truth: the yaml groups restate the schema's defaults and must not drift from them (keys
    they leave out, such as env.libero for the embedded env, fall back to the schema)."""
    from verl_async_vla.config.schema import RunConfig

    assert validate(compose_cfg("run_dir=outputs/run")) == RunConfig()


@pytest.mark.parametrize(
    "override, message",
    [
        ("env.faults.step_timeout_s=-1", "step_timeout_s must be >= 0"),
        ("env.faults.min_live_fraction=2", "min_live_fraction in"),
        ("env.faults.inject.kind=segfault", "env.faults.inject.kind='segfault' is unknown"),
        (
            "trainer.actor_strategy=zero3",
            "trainer.actor_strategy='zero3' is unknown; use one of \\['all_reduce', 'fsdp2'\\]",
        ),
        ("algo.optimizer=lamb", "algo.optimizer='lamb' is unknown; use one of \\['adam', 'sgd'\\]"),
    ],
)
def test_fault_settings_are_checked_before_ray(override, message):
    from verl_async_vla.validate import validate

    key, value = override.split("=")
    node: dict = {}
    cur = node
    *path, last = key.split(".")
    for p in path:
        cur = cur.setdefault(p, {})
    cur[last] = float(value) if value.lstrip("-").replace(".", "").isdigit() else value
    with pytest.raises(ValueError, match=message):
        validate(node)


@pytest.mark.parametrize("env", sorted(p.stem for p in (Path(CONFIG_DIR) / "env").glob("*.yaml")))
def test_every_env_config_takes_the_fault_and_restart_settings(env):
    run = validate(compose_cfg(f"env={env}", "env.faults.step_timeout_s=600", "env.faults.inject.kind=raise",
                               "trainer.worker_restarts=5", "run_dir=/tmp/x"))  # fmt: skip
    assert run.env.faults.step_timeout_s == 600 and run.trainer.worker_restarts == 5
    assert run.env.faults.inject.token  # derived from the run dir: injected faults are counted once per run


def test_each_trainer_gives_its_actor_the_threads_its_schedule_leaves_free():
    # sync: nothing runs beside a lockstep update, so every core; async: the producers run beside every update
    sync, async_ = (
        validate(compose_cfg(f"trainer={t}", "run_dir=/tmp/x")).trainer for t in ("sync", "async_vla")
    )
    assert (sync.actor_threads, async_.actor_threads) == (-1, 0)
    assert sync.env_nice == async_.env_nice == 19 and sync.rollout_nice == async_.rollout_nice == 19
    with pytest.raises(ValueError, match="trainer.actor_threads=-2 must be >= -1"):
        validate({"trainer": {"actor_threads": -2}})
    with pytest.raises(ValueError, match="trainer.torch_threads=0"):
        validate({"trainer": {"torch_threads": 0}})
