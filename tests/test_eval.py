"""The evaluation command on a small local checkpoint (in-process, no Ray)."""

import pytest

from verl_async_vla.config.schema import ModelConfig
from verl_async_vla.eval import main
from verl_async_vla.models import build_policy
from verl_async_vla.models.checkpoint import save_checkpoint


@pytest.fixture
def small_checkpoint(tmp_path):
    cfg = ModelConfig(image_size=32, channels=8, hidden=32)
    return save_checkpoint(tmp_path / "p.safetensors", build_policy(cfg), cfg, policy_version=7)


def test_eval_reports_success_over_the_requested_held_out_episodes(small_checkpoint, capsys):
    res = main([str(small_checkpoint), "--episodes", "6", "--num-envs", "4", "--set", "max_episode_steps=8"])
    assert res["episodes"] == 6 and 0.0 <= res["success_rate"] <= 1.0
    assert res["policy_version"] == 7
    assert '"success_rate"' in capsys.readouterr().out
    again = main(
        [str(small_checkpoint), "--episodes", "6", "--num-envs", "4", "--set", "max_episode_steps=8"]
    )
    assert again["success_rate"] == res["success_rate"]  # same held-out seeds, greedy policy: reproducible


def test_eval_of_a_missing_checkpoint_names_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="model.checkpoint"):
        main([str(tmp_path / "missing.safetensors")])


def test_eval_writes_an_image_strip_of_the_first_episode(small_checkpoint, tmp_path):
    strip = tmp_path / "strip.png"
    res = main([str(small_checkpoint), "--episodes", "2", "--num-envs", "2", "--set", "max_episode_steps=12",
                "--strip", str(strip)])  # fmt: skip
    assert res["strip"] == str(strip) and strip.stat().st_size > 1000
    # the strip shows env 0's first episode, with its own instruction and outcome
    episode = res["strip_episode"]
    assert "cube" in episode["instruction"] or "block" in episode["instruction"]
    assert 1 <= episode["decisions"] <= 3  # 12 control steps in chunks of 4
    assert episode["success"] in (True, False) and res["success_rate"] >= float(episode["success"]) / 2


def test_eval_rejects_an_unknown_env_key(small_checkpoint):
    with pytest.raises(ValueError, match="--set"):
        main([str(small_checkpoint), "--episodes", "2", "--set", "max_episode_stepz=8"])
