"""The verl plugin entry point: discovered by `import verl`, registers our algorithms, stays quiet."""

import subprocess
import sys
from importlib.metadata import entry_points


def test_entry_point_is_declared_in_the_verl_plugins_group():
    eps = {ep.name: ep.value for ep in entry_points(group="verl.plugins")}
    assert eps.get("async_vla") == "verl_async_vla.plugin"


def test_import_verl_loads_the_plugin_and_registers_quietly():
    code = (
        "import sys, verl\n"
        "assert 'verl_async_vla.plugin' in sys.modules, 'plugin not loaded by import verl'\n"
        "from verl.trainer.ppo import core_algos as c\n"
        "assert 'vtrace' in c.ADV_ESTIMATOR_REGISTRY\n"
        "assert {'decoupled_ppo', 'gipo', 'm2po', 'topr'} <= set(c.POLICY_LOSS_REGISTRY)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout == ""
    assert "verl_async_vla" not in res.stderr  # no warnings of ours on import


def test_plugin_can_be_disabled_by_verl_policy():
    code = "import sys, verl; print('verl_async_vla.plugin' in sys.modules)"
    env = {"VERL_USE_EXTERNAL_PLUGINS": "none", "PATH": ""}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert res.stdout.strip() == "False", res.stderr


def test_register_is_idempotent_and_reports_what_it_added():
    from verl_async_vla import plugin

    assert (
        plugin.register()
        == plugin.register()
        == {"policy_loss": ["decoupled_ppo", "gipo", "m2po", "topr"], "adv_estimator": ["vtrace"]}
    )
    assert set(plugin.ROLE_WORKERS) == {"env", "rollout", "actor"}


def test_every_optional_extra_is_a_backend_with_code_behind_it():
    """An extra that installs packages no code uses does not exist: each one (dev aside) names an env backend that
    checks for and imports its package, or a model whose module imports every package the extra installs."""
    from pathlib import Path

    import tomllib

    from verl_async_vla.envs import BACKEND_PACKAGES, ENV_REGISTRY

    extras = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    from verl_async_vla.models import MODEL_NAMES

    root = Path(__file__).parents[1] / "verl_async_vla"
    for name in set(extras) - {"dev"}:
        if name in MODEL_NAMES:
            source = (root / "models" / f"{name}.py").read_text()
            for req in extras[name]:
                package = req.split(">")[0].split("=")[0].split("[")[0].strip()
                assert f"from {package} import" in source or f"import {package}" in source, (name, package)
            continue
        assert name in BACKEND_PACKAGES and name in ENV_REGISTRY, f"extra {name!r} has no backend behind it"
