"""Hydra composition, config groups and start-up validation."""

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import MissingConfigException

from verl_async_vla.config import CONFIG_DIR
from verl_async_vla.config.schema import validate
from verl_async_vla.controller import CONTROLLERS, build_controller


def compose_cfg(*overrides):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
        return compose(config_name="vla_trainer", overrides=list(overrides))


def test_default_config_validates():
    run = validate(compose_cfg("run_dir=/tmp/x"))
    assert run.trainer.name == "sync" and run.env.name == "embedded_reach" and run.model.action_head == "gaussian"


@pytest.mark.parametrize("trainer", sorted(CONTROLLERS))
def test_trainer_group_selects_the_controller(trainer):
    run = validate(compose_cfg(f"trainer={trainer}", "run_dir=/tmp/x"))
    assert type(build_controller(run)) is CONTROLLERS[trainer]


def test_misspelt_trainer_fails_and_lists_the_options():
    with pytest.raises(MissingConfigException, match="sync"):
        compose_cfg("trainer=snyc")


def test_discrete_model_group_switches_the_head():
    assert validate(compose_cfg("model=tiny_vla_discrete", "run_dir=/tmp/x")).model.action_head == "discrete"


def test_unknown_key_or_wrong_type_fails_with_the_key_named():
    with pytest.raises(ValueError, match="env.num_envz"):
        validate({"env": {"num_envz": 3}})
    with pytest.raises(ValueError, match="trainer.total_env_steps"):
        validate({"trainer": {"total_env_steps": "lots"}})


def test_cross_field_rules_name_the_fix():
    with pytest.raises(ValueError, match="env.image_size"):
        validate({"model": {"image_size": 32}})
    with pytest.raises(ValueError, match="'gaussian' or 'discrete'"):
        validate({"model": {"action_head": "diffusion"}})


def test_unknown_env_names_the_available_ones():
    from verl_async_vla.envs import make_env_shard

    with pytest.raises(ValueError, match="embedded_reach"):
        make_env_shard(validate({"env": {"name": "libero_typo"}}).env, seed=0)
