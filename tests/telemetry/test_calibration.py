"""The bounds every trainer is judged by: their maths on known numbers, and a real calibration of a workload whose
env latency is known, through the same worker groups a run uses."""

import dataclasses

import numpy as np
import pytest

from verl_async_vla.telemetry.calibration import (
    StageCost,
    bounds_from_measurements,
    pipeline_bounds,
    serialisation_cost,
)


def stages(env=300.0, rollout=2000.0, actor=500.0, cpu=(1e-3, 2e-4, 8e-4)):
    return {
        "env": StageCost(env, cpu[0]),
        "rollout": StageCost(rollout, cpu[1]),
        "actor": StageCost(actor, cpu[2]),
    }


def test_the_disaggregated_bound_is_the_slowest_stage_of_all_three():
    assert pipeline_bounds(stages(), cores=2)["disaggregated"] == pytest.approx(300.0)
    assert pipeline_bounds(stages(), cores=2)["slowest"] == "env"
    # each stage in turn the slowest: a minimum that leaves any of them out fails one of these
    assert pipeline_bounds(stages(env=900.0, actor=250.0), cores=2)["disaggregated"] == pytest.approx(250.0)
    assert pipeline_bounds(stages(env=900.0, rollout=100.0), cores=2)["disaggregated"] == pytest.approx(100.0)


def test_the_machine_bound_is_the_cores_over_the_cpu_of_all_stages_capped_by_the_slowest():
    b = pipeline_bounds(stages(env=5000.0, rollout=5000.0, actor=5000.0), cores=2)
    assert b["cpu_s_per_step"] == pytest.approx(2e-3)  # env + rollout + actor
    assert b["machine"] == pytest.approx(1000.0)  # 2 cores / 2 core-ms per step
    # a stage slower alone than the CPU allows caps it: sharing cores never makes a stage faster
    assert pipeline_bounds(stages(env=300.0), cores=2)["machine"] == pytest.approx(300.0)
    assert (
        pipeline_bounds(stages(), cores=4)["machine"] <= pipeline_bounds(stages(), cores=4)["disaggregated"]
    )


def test_missing_stages_and_cores_are_refused():
    with pytest.raises(ValueError, match="missing"):
        pipeline_bounds({"env": StageCost(1.0, 1.0)}, cores=2)
    with pytest.raises(ValueError, match="cores"):
        pipeline_bounds(stages(), cores=0)


def test_inference_counts_at_its_cheapest_batch_in_env_steps():
    measured = {
        "cores": 2, "env_steps_per_decision": 4.0,
        "env": {"env_steps": 1000, "env_steps_per_s": 500.0, "cpu_s": 1.0},
        "rollout": {"workers": 2, "batches": [{"batch": 1, "rows": 100, "wall_s": 1.0, "cpu_s": 1.0},
                                              {"batch": 8, "rows": 800, "wall_s": 1.0, "cpu_s": 1.0}]},
        "actor": {"env_steps": 2000, "wall_s": 4.0, "cpu_s": 4.0},
    }  # fmt: skip
    b = bounds_from_measurements(measured)
    assert b["stages"]["rollout"]["capacity"] == pytest.approx(
        2 * 800 * 4.0
    )  # 2 workers, batch 8, 4 steps each
    assert b["stages"]["rollout"]["cpu_s_per_step"] == pytest.approx(1.0 / 800 / 4.0)
    assert b["stages"]["env"] == {"capacity": 500.0, "cpu_s_per_step": pytest.approx(1e-3)}
    assert b["stages"]["actor"]["capacity"] == pytest.approx(500.0)
    assert b["machine"] == pytest.approx(min(2 / (1e-3 + 1 / 3200 + 2e-3), 500.0))


def actor_bound(per_update: list[dict]) -> dict:
    """The bounds of a workload whose actor made `per_update` updates of 1000 env steps (the other stages fast)."""
    measured = {
        "cores": 2, "env_steps_per_decision": 4.0,
        "env": {"env_steps": 1000, "env_steps_per_s": 5000.0, "cpu_s": 0.1},
        "rollout": {"workers": 1, "batches": [{"batch": 8, "rows": 8000, "wall_s": 1.0, "cpu_s": 0.1}]},
        "actor": {"updates": len(per_update), "env_steps": 1000 * len(per_update),
                  "wall_s": sum(u["wall_s"] for u in per_update), "cpu_s": sum(u["cpu_s"] for u in per_update),
                  "per_update": per_update, "env_steps_per_update": 1000},
    }  # fmt: skip
    return bounds_from_measurements(measured)


def test_the_actor_counts_at_its_fastest_timed_update():
    # three updates of 1000 env steps; the second was slowed by something else on the machine
    b = actor_bound(
        [{"wall_s": 2.0, "cpu_s": 1.9}, {"wall_s": 5.0, "cpu_s": 4.0}, {"wall_s": 2.5, "cpu_s": 2.4}]
    )
    assert b["stages"]["actor"] == {"capacity": pytest.approx(500.0), "cpu_s_per_step": pytest.approx(1.9e-3)}
    assert b["slowest"] == "actor" and b["disaggregated"] == pytest.approx(500.0)


def test_the_actor_counts_its_fastest_update_for_capacity_and_its_cheapest_for_cpu():
    # ActorWorker.calibrate times one thread and the trainer's actor_threads: two threads finish sooner but burn
    # more CPU per step, and the bound must hold for a trainer on either
    b = actor_bound(
        [{"wall_s": 2.0, "cpu_s": 1.9, "threads": 1}, {"wall_s": 1.2, "cpu_s": 2.3, "threads": 2}]
    )
    assert b["stages"]["actor"] == {
        "capacity": pytest.approx(1000 / 1.2),
        "cpu_s_per_step": pytest.approx(1.9e-3),
    }


def test_the_observations_crossings_count_in_the_machine_bound_only():
    measured = {
        "cores": 2, "env_steps_per_decision": 4.0,
        "env": {"env_steps": 1000, "env_steps_per_s": 5000.0, "cpu_s": 0.5},
        "rollout": {"workers": 1, "batches": [{"batch": 8, "rows": 8000, "wall_s": 1.0, "cpu_s": 0.4}]},
        "actor": {"env_steps": 2000, "wall_s": 0.5, "cpu_s": 0.5},
    }  # fmt: skip
    without = bounds_from_measurements(measured)
    # 1000 observations, 0.4 s to pickle and read back each time, two crossings: 0.2 ms per env step
    measured["transport"] = {"rows": 1000.0, "crossings": 2.0, "cpu_s": 0.4, "bytes": 1e6}
    b = bounds_from_measurements(measured)
    assert b["transport_cpu_s_per_step"] == pytest.approx(2 * 0.4 / 1000 / 4.0)
    assert b["cpu_s_per_step"] == pytest.approx(without["cpu_s_per_step"] + 2e-4)
    assert (
        b["machine"] == pytest.approx(2 / (without["cpu_s_per_step"] + 2e-4))
        and b["machine"] < without["machine"]
    )
    assert b["disaggregated"] == without["disaggregated"]  # on a cluster it runs on every host at once
    with pytest.raises(ValueError, match="transport"):
        pipeline_bounds(stages(), cores=2, transport_cpu_s_per_step=-1.0)


def test_serialisation_cost_grows_with_the_payload():
    small = serialisation_cost({"image": np.zeros((4, 8, 8, 3), np.uint8)})
    large = serialisation_cost({"image": np.ones((64, 224, 448, 3), np.uint8)})
    assert large["bytes"] >= 64 * 224 * 448 * 3 > small["bytes"]
    assert large["cpu_s"] > small["cpu_s"] >= 0


@pytest.mark.slow
def test_a_calibrated_env_stage_runs_at_the_rate_its_latency_allows(ray_session, small_cfg):
    """env.latency=uniform sleeps 10 ms per control step: 4 envs on their own lanes can do at most 400 env steps a
    second, and with the tiny env's small CPU cost not far below it. A calibration that times the lanes wrongly (all
    lanes' steps over their summed time, or one lane's steps only) lands far from it."""
    from verl_async_vla.calibrate import calibrate

    cfg = dataclasses.replace(small_cfg, env=dataclasses.replace(small_cfg.env, latency="uniform"))
    result = calibrate(cfg)
    m, b = result["measured"], result["bounds"]
    ceiling = 4 / 0.010
    assert 0.5 * ceiling < b["stages"]["env"]["capacity"] <= 1.02 * ceiling, (b, m)
    assert b["stages"]["actor"]["capacity"] > 0 and b["stages"]["rollout"]["capacity"] > 0
    assert 0 < b["machine"] <= b["disaggregated"]
    assert m["actor"]["updates"] >= 1 and m["actor"]["score_cpu_s"] > 0
    # every recorded observation is serialised, and crosses twice on the default (disaggregated) placement
    assert m["transport"]["crossings"] == 2 and m["transport"]["rows"] > 0
    assert m["transport"]["bytes"] > 0 and b["transport_cpu_s_per_step"] > 0
