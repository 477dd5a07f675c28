"""Whole-run checkpoints: a sync run stopped after k updates and resumed reaches the same counters and the same
weights as the uninterrupted run (CPU, one thread per worker: deterministic); a checkpoint from another config or a
damaged one is refused with a message; async resumes its weights, version and counters."""

import dataclasses
import json

import pytest
import torch

from verl_async_vla.controller import build_controller
from verl_async_vla.models.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow


def configure(cfg, run_dir, **trainer):
    return dataclasses.replace(cfg, run_dir=str(run_dir), trainer=dataclasses.replace(cfg.trainer, **trainer))


def train(cfg, stop_after=None):
    controller = build_controller(cfg)
    if stop_after is not None:  # a preempted job: stop at the update boundary after `stop_after` updates
        end = controller.end_iteration

        def end_then_maybe_stop(metrics, t0):
            end(metrics, t0)
            if controller.counters.iteration >= stop_after:
                controller.request_stop("test")

        controller.end_iteration = end_then_maybe_stop
    try:
        return controller.train()
    finally:
        controller.release_workers()


def test_sync_resume_matches_the_uninterrupted_run(ray_session, small_cfg, tmp_path):
    common = dict(name="sync", total_env_steps=200, checkpoint_every=2, eval_episodes=0)
    whole = train(configure(small_cfg, tmp_path / "whole", **common))
    assert whole["iterations"] >= 4
    cut = train(configure(small_cfg, tmp_path / "cut", **common), stop_after=2)
    assert cut["stopped"] == "test" and cut["iterations"] == 2
    assert (tmp_path / "cut" / "checkpoints" / "latest").read_text() == "run_000002"
    resumed = train(configure(small_cfg, tmp_path / "cut", resume=str(tmp_path / "cut"), **common))
    assert resumed["resumed_from"]["iteration"] == 2
    for key in ("iterations", "policy_version", "env_steps", "env_steps_executed"):
        assert resumed[key] == whole[key], key
    for key in ("episodes_produced", "episodes_trained", "samples_trained", "episodes_unaccounted"):
        assert resumed["ledger"][key] == whole["ledger"][key], key
    a, b = load_checkpoint(whole["checkpoint"])["weights"], load_checkpoint(resumed["checkpoint"])["weights"]
    assert all(torch.equal(a[k], b[k]) for k in a)  # bit-identical on CPU
    records = [json.loads(line) for line in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records if "time/iteration_s" in r] == list(
        range(1, whole["iterations"] + 1)
    )


def test_resume_refuses_another_config_and_a_damaged_checkpoint(ray_session, small_cfg, tmp_path):
    common = dict(name="sync", total_env_steps=60, checkpoint_every=1, eval_episodes=0)
    train(configure(small_cfg, tmp_path / "run", **common))
    other = dataclasses.replace(small_cfg, algo=dataclasses.replace(small_cfg.algo, lr=1e-2))
    with pytest.raises(ValueError, match=r"another config \(algo.lr"):
        train(configure(other, tmp_path / "run", resume="auto", **common))
    latest = (tmp_path / "run" / "checkpoints" / "latest").read_text()
    (tmp_path / "run" / "checkpoints" / latest / "run.json").write_text("{not json")
    with pytest.raises(ValueError, match="damaged"):
        train(configure(small_cfg, tmp_path / "run", resume="auto", **common))


def test_async_resume_continues_version_and_counters(ray_session, small_cfg, tmp_path):
    common = dict(name="async_vla", checkpoint_every=1, eval_episodes=0)
    first = train(configure(small_cfg, tmp_path / "run", total_env_steps=150, **common), stop_after=2)
    root = tmp_path / "run" / "checkpoints"
    saved = json.loads((root / (root / "latest").read_text() / "run.json").read_text())
    assert first["stopped"] == "test" and saved["policy_version"] >= 2
    # a checkpoint never holds more trained env steps than finished ones (the last updates were once logged
    # with stale producer counts)
    assert saved["env_steps_executed"] >= saved["env_steps"] >= saved["env_steps_trained"] > 0
    second = train(configure(small_cfg, tmp_path / "run", resume="auto", total_env_steps=300, **common))
    assert second["resumed_from"]["iteration"] == saved["iteration"]
    assert second["policy_version"] > saved["policy_version"]  # versions go on, they do not restart at 0
    assert second["env_steps"] >= 300 and second["ledger"]["episodes_unaccounted"] == 0
